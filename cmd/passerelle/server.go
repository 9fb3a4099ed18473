package main

import (
	"github.com/spf13/cobra"

	"github.com/passerelle/passerelle/internal/daemon"
	"github.com/passerelle/passerelle/securityserver"
)

func newServerCmd() *cobra.Command {
	var configPath, addrFile string
	cmd := &cobra.Command{
		Use:   "server --config FILE",
		Short: "Run a security server (consumer side, provider side, admin listener)",
		Long: `Runs a security server from its YAML configuration (see deploy/ for a commented
example and the README's configuration reference). It refuses to start on an invalid
configuration, naming the field, or without a valid federation directory.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := daemon.Logger()
			cfg, err := securityserver.LoadConfig(configPath)
			if err != nil {
				return err
			}
			s, err := securityserver.New(cmd.Context(), cfg, log)
			if err != nil {
				return err
			}
			defer s.Close()
			return s.Run(cmd.Context(), addrFile)
		},
	}
	cmd.Flags().StringVar(&configPath, "config", "", "the server's YAML configuration (required)")
	cmd.Flags().StringVar(&addrFile, "addr-file", "", "write the bound addresses (JSON: consumer, provider, admin, consumerTLS; those configured) to this file")
	cmd.MarkFlagRequired("config")
	return cmd
}
