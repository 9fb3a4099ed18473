// Package e2e holds Passerelle's process-level end-to-end tests: they build
// the passerelle binary once (TestMain), then drive it exactly as an
// operator would, every daemon its own process on 127.0.0.1 port 0 with
// --addr-file.
//
//   - TestFederation bootstraps a two-institution federation with the CLI
//     (ca, tsa, registry, keys, directory), starts ca serve, tsa serve,
//     registry serve, directory serve and two `passerelle server` processes
//     (the sample REST and SOAP services run in the test process), exchanges
//     REST and SOAP messages through the pair, SIGKILLs the consumer's
//     security server in the middle of concurrent traffic, restarts it, and
//     checks that every exchange acknowledged before the kill is in its
//     message log, timestamped and registered, verifies an evidence bundle
//     and audits the registry with the CLI.
//   - TestDeploy* check deploy/: the compose file names real services,
//     volumes, subcommands and flags; the federation init script runs and
//     produces a federation that `passerelle directory verify` accepts and
//     server configurations that load; the systemd units' ExecStart lines
//     name real subcommands and flags and pass `systemd-analyze verify`
//     where it is installed.
//
// The package has no non-test code; it is part of `go test ./...` and so of
// CI. Every process it starts is stopped in t.Cleanup, also on failure.
package e2e
