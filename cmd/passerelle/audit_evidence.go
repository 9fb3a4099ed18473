package main

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/securityserver/evidence"
)

// newAuditEvidenceCmd is `passerelle audit evidence`: an evidence bundle
// verified offline.
func newAuditEvidenceCmd() *cobra.Command {
	var trustDir string
	ocspMaxAge := time.Hour // the federation default
	cmd := &cobra.Command{
		Use:   "evidence FILE.zip --trust DIR",
		Short: "Verify an exchange's evidence bundle offline and print what each check proved",
		Long: `Verify an evidence bundle (passerelle evidence export) offline against a trust
directory (ca.pem, registry.vkey, tsa.pem; the sandbox writes one): both signatures,
the signers' chains and member bindings, their OCSP responses at signing time, the
bodies against the signed digests, the response's binding to the request, each
message's RFC 3161 timestamp over its batch and its hash-registry receipt.
Exits non-zero when any check fails. See docs/evidence.md.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if trustDir == "" {
				return errors.New("--trust is required")
			}
			trust, err := evidence.LoadTrust(trustDir)
			if err != nil {
				return err
			}
			trust.OCSPMaxAge = ocspMaxAge
			rep, err := evidence.VerifyFile(args[0], trust)
			printEvidenceReport(cmd.OutOrStdout(), args[0], rep, err)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&trustDir, "trust", "", "trust directory: ca.pem, registry.vkey and (optional) tsa.pem")
	cmd.Flags().DurationVar(&ocspMaxAge, "ocsp-max-age", ocspMaxAge, "how old a signer's OCSP response may have been at signing time (the federation's OCSP freshness)")
	return cmd
}

// printEvidenceReport prints each check, then a verdict.
func printEvidenceReport(out io.Writer, name string, rep *evidence.Report, err error) {
	if m := rep.Manifest; m != nil {
		fmt.Fprintf(out, "bundle %s: %s exchange %q, client %s, service %s\n", name, m.Protocol, m.MessageID, m.Client, m.Service)
	}
	for _, c := range rep.Checks {
		fmt.Fprintln(out, c)
	}
	switch {
	case err == nil:
		fmt.Fprintf(out, "VERIFIED: all %d checks passed\n", len(rep.Checks))
	case errors.Is(err, evidence.ErrIncomplete):
		fmt.Fprintf(out, "INCOMPLETE: %v\n", err)
	default:
		fmt.Fprintf(out, "FAILED: %v\n", err)
	}
}
