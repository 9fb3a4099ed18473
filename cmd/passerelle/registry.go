package main

import "github.com/spf13/cobra"

func newRegistryCmd() *cobra.Command {
	return &cobra.Command{Use: "registry", Short: "(not yet built)"}
}
