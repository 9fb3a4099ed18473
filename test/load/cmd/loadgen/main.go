// Command loadgen drives `make bench` (scripts/bench.sh): it loads a running
// `passerelle sandbox` process, the sample services behind it called
// directly, and an nginx mutual-TLS reverse-proxy pair, all in the same run,
// and prints a markdown report whose figures are ratios against those
// baselines.
//
//	loadgen run -sandbox DIR -pid PID -nginx URL -nginx-pids A,B [-duration 3s] …
//	loadgen stream [-size 209715200]       # a 200 MiB body through an in-process pair, RSS growth
//	loadgen components BENCH-OUTPUT-FILE   # key algorithms, registry, TSA tables
//	loadgen backends -sandbox DIR          # host:port of the REST and SOAP sample services
//	loadgen freeport [-n 2]                # free loopback ports for nginx's config
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/passerelle/passerelle/test/load"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

var errUsage = errors.New("usage: loadgen run|stream|components|backends|freeport [flags] (see the package doc)")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errUsage
	}
	switch args[0] {
	case "run":
		return runExchange(ctx, args[1:], stdout, stderr)
	case "stream":
		return runStream(ctx, args[1:], stdout, stderr)
	case "components":
		if len(args) != 2 {
			return errUsage
		}
		f, err := os.Open(args[1])
		if err != nil {
			return err
		}
		defer f.Close()
		return components(f, stdout)
	case "backends":
		fs := flag.NewFlagSet("backends", flag.ContinueOnError)
		dir := fs.String("sandbox", "", "directory of the running sandbox")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		sb, err := load.LoadSandbox(*dir)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(stdout, strings.TrimPrefix(sb.HelloURL, "http://"), strings.TrimPrefix(sb.SOAPURL, "http://"))
		return err
	case "freeport":
		fs := flag.NewFlagSet("freeport", flag.ContinueOnError)
		n := fs.Int("n", 1, "how many ports")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		return freePorts(*n, stdout)
	}
	return errUsage
}

// freePorts prints n ports the OS had free on 127.0.0.1. nginx needs its
// ports in its configuration file, so they are chosen here and nginx binds
// them a moment later; bench.sh retries with new ports if nginx fails.
func freePorts(n int, w io.Writer) error {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var ports []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		lns = append(lns, ln)
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	_, err := fmt.Fprintln(w, strings.Join(ports, " "))
	return err
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad positive integer %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
