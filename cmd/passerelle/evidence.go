package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/securityserver/evidence"
)

// newEvidenceCmd is `passerelle evidence`: evidence bundles from a running
// security server.
func newEvidenceCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "evidence",
		Short: "Evidence bundles of exchanges, from a running security server's admin API",
	}
	cmd.AddCommand(newEvidenceExportCmd())
	return cmd
}

func newEvidenceExportCmd() *cobra.Command {
	var adminURL, tokenFile, id, client, out string
	cmd := &cobra.Command{
		Use:   "export --admin-url URL --token-file FILE --id X-ROAD-ID [--client ID] --out FILE.zip",
		Short: "Download an exchange's evidence bundle (verify it with `passerelle audit evidence`)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if adminURL == "" || tokenFile == "" || id == "" || out == "" {
				return errors.New("--admin-url, --token-file, --id and --out are required")
			}
			var cid pki.ClientID
			if client != "" {
				var err error
				if cid, err = pki.ParseClientID(client); err != nil {
					return fmt.Errorf("--client: %w", err)
				}
			}
			tok, err := os.ReadFile(tokenFile)
			if err != nil {
				return fmt.Errorf("--token-file: %w", err)
			}
			n, err := exportEvidence(cmd.Context(), adminURL, strings.TrimSpace(string(tok)), id, cid, out)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "evidence bundle of %s written to %s (%d bytes)\n", id, out, n)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&adminURL, "admin-url", "", "the security server's admin API, e.g. http://127.0.0.1:8081")
	f.StringVar(&tokenFile, "token-file", "", "file holding the admin bearer token")
	f.StringVar(&id, "id", "", "the exchange's X-Road message id")
	f.StringVar(&client, "client", "", "the exchange's client (INSTANCE/CLASS/MEMBER[/SUBSYSTEM]) when several share the id")
	f.StringVar(&out, "out", "", "the ZIP file to write (mode 0600)")
	return cmd
}

// exportEvidence fetches a bundle into out, atomically: a temporary file in
// out's directory, renamed once complete.
func exportEvidence(ctx context.Context, adminURL, token, id string, client pki.ClientID, out string) (int64, error) {
	tmp, err := os.CreateTemp(filepath.Dir(out), ".evidence-*.zip")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	n, err := evidence.Fetch(ctx, nil, adminURL, token, id, client, tmp)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, err
	}
	return n, os.Rename(tmp.Name(), out)
}
