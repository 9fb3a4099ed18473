package main

import "github.com/spf13/cobra"

func newCACmd() *cobra.Command {
	return &cobra.Command{Use: "ca", Short: "(not yet built)"}
}
