package main

import "github.com/spf13/cobra"

func newTSACmd() *cobra.Command {
	return &cobra.Command{Use: "tsa", Short: "(not yet built)"}
}
