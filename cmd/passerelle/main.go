// Command passerelle is Passerelle's one binary: the security server, the
// federation's central services (CA and OCSP, TSA, hash registry, directory),
// the sandbox and demo, and the auditor's tools. See the README's command
// reference.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd().ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "passerelle:", err)
		os.Exit(1)
	}
}
