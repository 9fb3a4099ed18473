package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ca"
)

func newKeysCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "keys",
		Short: "An institution's keys: generate a key and CSR, enroll with the CA, import a certificate",
		Long: `An institution's keys directory holds, for each usage U (auth, sign):
  U.key         the private key (PEM, mode 0600; never overwritten)
  U.csr         its certificate signing request (PEM)
  U.enrollment  the enrollment id, once submitted to the CA
  U.pem         the certificate chain (PEM, leaf first, then the CA)`,
	}
	cmd.AddCommand(newKeysGenerateCmd(), newKeysEnrollCmd(), newKeysImportCmd())
	return cmd
}

func newKeysGenerateCmd() *cobra.Command {
	var dir, member, usage, key string
	cmd := &cobra.Command{
		Use:   "generate",
		Short: "Make a private key (0600) and a CSR for a member and usage",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := pki.ParseMemberID(member)
			if err != nil {
				return fmt.Errorf("--member: %w", err)
			}
			u, err := pki.ParseUsage(usage)
			if err != nil {
				return fmt.Errorf("--usage: %w", err)
			}
			alg, err := pki.ParseKeyAlgorithm(key)
			if err != nil {
				return fmt.Errorf("--key: %w", err)
			}
			kd := ca.KeyDir(dir)
			if _, err := kd.Generate(m, u, alg); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "generated %s key %s (mode 0600) and CSR %s for %s\n", alg, kd.KeyPath(u), kd.CSRPath(u), m)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "keys directory (created 0700)")
	f.StringVar(&member, "member", "", "member INSTANCE/CLASS/MEMBER")
	f.StringVar(&usage, "usage", "auth", "auth (TLS) or sign (message signatures)")
	f.StringVar(&key, "key", "ecdsa-p256", "key algorithm: ecdsa-p256, rsa-2048, rsa-3072, rsa-4096")
	requireFlags(cmd, "dir", "member")
	return cmd
}

func newKeysEnrollCmd() *cobra.Command {
	var (
		dir, caURL, usage, member string
		wait, poll                time.Duration
	)
	cmd := &cobra.Command{
		Use:   "enroll",
		Short: "Submit the CSR to the CA's enrollment API, wait for approval, store the certificate chain",
		Long: `Submit U.csr to the CA (POST /api/v1/enrollments), record the enrollment id in
U.enrollment, and poll until an administrator approves or rejects it; then store the
chain as U.pem. Run it again to resume waiting on the same enrollment. --wait 0
submits (or looks once) and exits 0 while the enrollment is still pending.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			u, err := pki.ParseUsage(usage)
			if err != nil {
				return fmt.Errorf("--usage: %w", err)
			}
			var m pki.ClientID
			if member != "" {
				if m, err = pki.ParseMemberID(member); err != nil {
					return fmt.Errorf("--member: %w", err)
				}
			}
			client, err := ca.NewClient(caURL, nil)
			if err != nil {
				return fmt.Errorf("--ca-url: %w", err)
			}
			kd := ca.KeyDir(dir)
			out := cmd.OutOrStdout()
			chain, id, err := kd.Enroll(cmd.Context(), client, m, u, wait, poll)
			if errors.Is(err, ca.ErrPending) && wait <= 0 {
				fmt.Fprintf(out, "enrollment %s is pending; the CA administrator approves it with: passerelle ca approve %s --dir CADIR\n", id, id)
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "enrollment %s approved: certificate serial %s, valid until %s, stored in %s\n",
				id, chain[0].SerialNumber.Text(16), chain[0].NotAfter.UTC().Format(time.RFC3339), kd.CertPath(u))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "keys directory (made by keys generate)")
	f.StringVar(&caURL, "ca-url", "", "the CA's base URL, e.g. http://ca.example:8888")
	f.StringVar(&usage, "usage", "auth", "which key's CSR to enroll: auth or sign")
	f.StringVar(&member, "member", "", "member INSTANCE/CLASS/MEMBER (default: the one the CSR names)")
	f.DurationVar(&wait, "wait", 30*time.Minute, "how long to wait for the administrator (0: do not wait)")
	f.DurationVar(&poll, "poll", 2*time.Second, "how often to ask the CA while waiting")
	requireFlags(cmd, "dir", "ca-url")
	return cmd
}

func newKeysImportCmd() *cobra.Command {
	var dir, certFile string
	cmd := &cobra.Command{
		Use:   "import",
		Short: "Store a certificate (chain) issued elsewhere, after checking it matches a key in the directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			data, err := os.ReadFile(certFile)
			if err != nil {
				return err
			}
			kd := ca.KeyDir(dir)
			u, err := kd.Import(data)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "imported the %s certificate into %s\n", u, kd.CertPath(u))
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "keys directory")
	f.StringVar(&certFile, "cert", "", "certificate or chain (PEM, leaf first)")
	requireFlags(cmd, "dir", "cert")
	return cmd
}
