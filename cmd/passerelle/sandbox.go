package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/internal/daemon"
	"github.com/passerelle/passerelle/sandbox"
)

func newSandboxCmd() *cobra.Command {
	var dir string
	var portBase int
	var quiet bool
	cmd := &cobra.Command{
		Use:   "sandbox [--dir DIR] [--port-base N]",
		Short: "A whole federation on loopback in one process: PKI, TSA, registry, directory, two institutions, sample services",
		Long: `Generate and run, in this one process on 127.0.0.1, a complete federation:
a CA and its OCSP responder, a TSA, a hash registry, a signed federation directory,
two institutions (SANDBOX/GOV/PROVIDER offering the REST service hello and the SOAP
service getRandom, SANDBOX/GOV/CONSUMER with the client subsystem client), each with
its keys and its security server. It writes DIR/sandbox.json, prints curl commands to
try, and runs until Ctrl-C.

Ports: the consumer side is at --port-base (default 8080) and every other listener at
a fixed offset from it (see docs/sandbox.md); --port-base 0 lets the OS choose them all.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if dir == "" {
				tmp, err := os.MkdirTemp("", "passerelle-sandbox-")
				if err != nil {
					return err
				}
				dir = tmp
			}
			log := daemon.Logger()
			if quiet {
				log = slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			}
			sb, err := sandbox.Start(ctx, sandbox.Config{Dir: dir, PortBase: portBase, Log: log})
			if err != nil {
				return err
			}
			printSandbox(cmd.OutOrStdout(), sb)
			<-ctx.Done()
			fmt.Fprintln(cmd.OutOrStdout(), "stopping the sandbox")
			return sb.Close()
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "where to generate the federation (must be empty or absent; default: a new temporary directory, kept)")
	f.IntVar(&portBase, "port-base", sandbox.DefaultPortBase, "consumer side port; other listeners at fixed offsets (0: all chosen by the OS)")
	f.BoolVar(&quiet, "quiet", false, "log warnings and errors only")
	return cmd
}

// printSandbox tells the user what runs and what to paste.
func printSandbox(w io.Writer, sb *sandbox.Sandbox) {
	i := sb.Info
	fmt.Fprintf(w, `Passerelle sandbox running in %s
  description of every endpoint: %s

  consumer side (your client systems call this)   %s
  client subsystem                                 %s
  REST service                                     %s
  SOAP service                                     %s
  admin API of the consumer's server               %s (token in %s)
  OCSP %s   TSA %s
  registry %s (gRPC %s)   directory %s
  trust directory                                  %s
  server configurations                            %s, %s

Try it:

  # REST GET through both security servers (the service echoes what it saw)
  curl -s -H 'X-Road-Client: %s' '%s/r1/%s/anything?q=1'

  # REST POST (the service echoes the body)
  curl -s -H 'X-Road-Client: %s' -H 'Content-Type: application/json' \
       -d '{"hello":"world"}' '%s/r1/%s/pets'

  # SOAP (X-Road message protocol 4.0)
  curl -s -H 'Content-Type: text/xml; charset=utf-8' --data-binary @%s '%s/'

Ctrl-C stops everything; the files stay in %s.
`,
		sb.Dir, sb.InfoPath,
		i.ConsumerURL, i.ClientID, i.RESTService, i.SOAPService, i.AdminURL, i.AdminTokenFile,
		i.OCSPURL, i.TSAURL, i.RegistryURL, i.RegistryGRPC, i.DirectoryURL, i.TrustDir,
		sb.Consumer.ConfigPath, sb.Provider.ConfigPath,
		i.ClientID, i.ConsumerURL, i.RESTService,
		i.ClientID, i.ConsumerURL, i.RESTService,
		filepath.Join(sb.Dir, sandbox.SampleSOAPFile), i.ConsumerURL,
		sb.Dir)
}
