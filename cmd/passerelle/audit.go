package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/hashregistry"
)

// newAuditCmd is the auditor's parent command; `audit evidence` joins it later.
func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Auditor checks: the registry's consistency, registry receipts and evidence bundles (offline)",
	}
	cmd.AddCommand(newAuditRegistryCmd(), newAuditReceiptCmd(), newAuditEvidenceCmd())
	return cmd
}

func newAuditRegistryCmd() *cobra.Command {
	var url, vkey, state string
	var full bool
	cmd := &cobra.Command{
		Use:   "registry --url URL --vkey FILE --state DIR [--full]",
		Short: "Verify the registry's checkpoint, its consistency with the last one seen, and (--full) every entry",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if url == "" || vkey == "" || state == "" {
				return errors.New("--url, --vkey and --state are required")
			}
			v, err := loadRegistryVerifier(vkey)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			a := &hashregistry.Auditor{URL: url, Verifier: v, StateDir: state}
			rep, err := a.Audit(cmd.Context(), full)
			if rep.Checkpoint.Origin != "" {
				fmt.Fprintf(out, "OK   checkpoint signed by %s: %d entries, root %s\n", v.Name(), rep.Checkpoint.Size, rep.Checkpoint.Hash)
			}
			if err != nil {
				if rep.ForkEvidence != "" {
					fmt.Fprintf(out, "FAIL both signed checkpoints saved as evidence in %s\n", rep.ForkEvidence)
				}
				fmt.Fprintf(out, "FAIL %v\n", err)
				return errors.New("registry audit failed")
			}
			switch p := rep.Previous; {
			case p == nil:
				fmt.Fprintf(out, "NOTE first audit with state %s: nothing to compare with yet (trust on first use)\n", state)
			case p.Size == rep.Checkpoint.Size:
				fmt.Fprintf(out, "OK   same tree as the last checkpoint seen (%d entries)\n", p.Size)
			default:
				fmt.Fprintf(out, "OK   consistent with the last checkpoint seen (%d → %d entries, %d-hash proof from the tiles)\n", p.Size, rep.Checkpoint.Size, rep.ConsistencyHashes)
			}
			if full {
				fmt.Fprintf(out, "OK   all %d entries fetched, decoded, matched to the tree's leaves; the root recomputed from them matches\n", rep.EntriesChecked)
			}
			fmt.Fprintf(out, "OK   checkpoint kept in %s for the next audit\n", state)
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "the registry's HTTP read API, e.g. http://127.0.0.1:8081")
	cmd.Flags().StringVar(&vkey, "vkey", "", "the registry's verifier key file (registry.vkey)")
	cmd.Flags().StringVar(&state, "state", "", "directory keeping the last verified checkpoint")
	cmd.Flags().BoolVar(&full, "full", false, "also fetch every entry and recompute the root")
	return cmd
}

func newAuditReceiptCmd() *cobra.Command {
	var vkey, hash string
	cmd := &cobra.Command{
		Use:   "receipt FILE --vkey FILE [--hash HEX]",
		Short: "Verify a registry receipt (c2sp.org/tlog-proof@v1) offline",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if vkey == "" {
				return errors.New("--vkey is required")
			}
			v, err := loadRegistryVerifier(vkey)
			if err != nil {
				return err
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			r, err := hashregistry.VerifyReceipt(data, v)
			if err != nil {
				fmt.Fprintf(out, "FAIL %s: %v\n", args[0], err)
				return errors.New("receipt does not verify")
			}
			if hash != "" {
				want, err := hex.DecodeString(hash)
				if err != nil || len(want) != len(r.Entry.Hash) {
					return errors.New("--hash: want 64 hex digits (SHA-256)")
				}
				if string(want) != string(r.Entry.Hash[:]) {
					fmt.Fprintf(out, "FAIL the receipt is for message hash %x, not %s\n", r.Entry.Hash, hash)
					return errors.New("receipt is for another message")
				}
			}
			fmt.Fprintf(out, "OK   checkpoint signed by %s: %d entries, root %s\n", v.Name(), r.Checkpoint.Size, r.Checkpoint.Hash)
			fmt.Fprintf(out, "OK   entry %d is included in that tree (inclusion proof verified)\n", r.Index)
			fmt.Fprintf(out, "     member    %s\n", r.Entry.Member)
			fmt.Fprintf(out, "     message   sha256:%x (%s)\n", r.Entry.Hash, r.Entry.Kind)
			fmt.Fprintf(out, "     logged at %s\n", r.Entry.Time.UTC().Format(time.RFC3339Nano))
			if hash != "" {
				fmt.Fprintln(out, "OK   message hash matches --hash")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&vkey, "vkey", "", "the registry's verifier key file (registry.vkey)")
	cmd.Flags().StringVar(&hash, "hash", "", "also check the receipt is for this message hash (hex SHA-256)")
	return cmd
}
