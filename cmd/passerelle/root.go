package main

import "github.com/spf13/cobra"

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "passerelle",
		Short:         "Passerelle: an X-Road-compatible secure data exchange layer",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(
		newDemoCmd(),
		newCACmd(),
		newKeysCmd(),
		newTSACmd(),
		newRegistryCmd(),
		newDirectoryCmd(),
		newServerCmd(),
		newSandboxCmd(),
		newEvidenceCmd(),
		newAdminCmd(),
		newAuditCmd(),
	)
	return root
}
