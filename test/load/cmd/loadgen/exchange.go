package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/passerelle/passerelle/test/load"
)

type exchangeFlags struct {
	sandboxDir string
	pid        int
	nginxURL   string
	nginxPids  string
	duration   time.Duration
	warmup     time.Duration
	conc       string
	rates      string
	holdFlight int
	openDur    time.Duration
	conns      int
	only       string
	tmpfsDir   string
	streamRes  string
}

// system is one of the three things measured side by side.
type system struct {
	name string
	ep   load.Endpoints
}

func runExchange(ctx context.Context, args []string, w, logw io.Writer) error {
	var f exchangeFlags
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.StringVar(&f.sandboxDir, "sandbox", "", "directory of the running `passerelle sandbox` (sandbox.json)")
	fs.IntVar(&f.pid, "pid", 0, "PID of the `passerelle sandbox` process (for RSS)")
	fs.StringVar(&f.nginxURL, "nginx", "", "URL of the first nginx of the mTLS pair (plain HTTP; /soap/ goes to the SOAP backend)")
	fs.StringVar(&f.nginxPids, "nginx-pids", "", "master PIDs of the two nginx instances, comma-separated (for RSS)")
	fs.DurationVar(&f.duration, "duration", 3*time.Second, "measured time of each closed-loop run")
	fs.DurationVar(&f.warmup, "warmup", time.Second, "unmeasured time before each run")
	fs.StringVar(&f.conc, "conc", "1,16,64", "closed-loop concurrencies")
	fs.StringVar(&f.rates, "rates", "200,50", "open-loop arrival rates, requests/s (the first is the goal's)")
	fs.IntVar(&f.holdFlight, "hold-inflight", 50, "memory test: requests in flight at once while the connections are opened (the server refuses a client's 101st with 429 by default)")
	fs.DurationVar(&f.openDur, "open-duration", 10*time.Second, "measured time of each open-loop run")
	fs.IntVar(&f.conns, "conns", 1000, "keep-alive connections held for the memory test")
	fs.StringVar(&f.tmpfsDir, "sandbox-tmpfs", "", "optional second sandbox whose directory is on tmpfs (fsync costs nothing): a diagnostic column showing what durability costs")
	fs.StringVar(&f.streamRes, "stream-result", "", "JSON written by `loadgen stream -result`, for the goals table")
	fs.StringVar(&f.only, "only", "", "measure only this system (direct, nginx or pair) at the -conc concurrencies, for profiling; no report")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if f.sandboxDir == "" || f.nginxURL == "" || f.pid == 0 {
		return fmt.Errorf("run needs -sandbox, -pid and -nginx")
	}
	concs, err := parseInts(f.conc)
	if err != nil {
		return err
	}
	rates, err := parseInts(f.rates)
	if err != nil {
		return err
	}
	nginxPids, err := parseInts(f.nginxPids)
	if err != nil {
		return err
	}
	sb, err := load.LoadSandbox(f.sandboxDir)
	if err != nil {
		return err
	}
	ng := strings.TrimSuffix(f.nginxURL, "/")
	systems := []system{
		{"direct", sb.Backend},
		{"nginx pair", load.Endpoints{REST: ng, SOAP: ng + "/soap/"}},
		{"Passerelle pair", sb.Pair},
	}
	if f.tmpfsDir != "" {
		sb2, err := load.LoadSandbox(f.tmpfsDir)
		if err != nil {
			return err
		}
		systems = append(systems, system{"pair, logs on tmpfs", sb2.Pair})
	}
	runID := fmt.Sprintf("bench-%d", time.Now().UnixNano())
	logf := func(format string, a ...any) { fmt.Fprintf(logw, "loadgen: "+format+"\n", a...) }

	// Every system must answer every shape before anything is measured.
	for _, s := range systems {
		for _, k := range load.Kinds {
			t := load.Target{Name: s.name, New: load.NewRequestFunc(k, s.ep, sb.Info.ClientID, runID+"-check"), Client: load.NewClient(1)}
			r := load.Closed(ctx, t, 1, 0, 300*time.Millisecond)
			if r.Requests == 0 {
				return fmt.Errorf("%s does not answer %s: %s", s.name, k, r.FirstError)
			}
		}
	}

	if f.only != "" {
		i := map[string]int{"direct": 0, "nginx": 1, "pair": 2}[f.only]
		s := systems[i]
		for _, k := range load.Kinds {
			for _, c := range concs {
				t := load.Target{Name: s.name, New: load.NewRequestFunc(k, s.ep, sb.Info.ClientID, fmt.Sprintf("%s-%d", runID, c)), Client: load.NewClient(c)}
				r := load.Closed(ctx, t, c, f.warmup, f.duration)
				logf("%s %s", k, r.String())
			}
		}
		return nil
	}
	rep := &report{concs: concs, systems: systems, closed: map[cell]load.Result{}}
	// Memory first, on fresh processes: the sandbox process and the nginx
	// pair, each holding f.conns keep-alive connections that each carried
	// one REST GET.
	rep.conns = f.conns
	rep.holdFlight = f.holdFlight
	rep.mem = append(rep.mem, hold(ctx, logf, "Passerelle pair (`passerelle sandbox` process: both servers, CA, TSA, registry, backends)",
		[]int{f.pid}, sb.Info.ConsumerURL, load.NewRequestFunc(load.RESTGet, sb.Pair, sb.Info.ClientID, runID), f.conns, f.holdFlight))
	if len(nginxPids) > 0 {
		rep.mem = append(rep.mem, hold(ctx, logf, "nginx pair (both instances: masters + workers)",
			nginxPids, ng, load.NewRequestFunc(load.RESTGet, systems[1].ep, sb.Info.ClientID, runID), f.conns, f.holdFlight))
	}
	if lat, err := load.FsyncProbe(f.sandboxDir, 200); err != nil {
		logf("fsync probe: %v", err)
	} else {
		rep.fsync = lat
		logf("fsync probe in %s: p50 %v p99 %v", f.sandboxDir, load.Quantile(lat, 0.5), load.Quantile(lat, 0.99))
	}
	io0, ioErr := load.ProcIO(f.pid)
	for _, k := range load.Kinds {
		for _, c := range concs {
			for _, s := range systems {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				t := load.Target{Name: s.name, New: load.NewRequestFunc(k, s.ep, sb.Info.ClientID, fmt.Sprintf("%s-%d", runID, c)), Client: load.NewClient(c)}
				r := load.Closed(ctx, t, c, f.warmup, f.duration)
				logf("%s %s", k, r.String())
				if r.FirstError != "" {
					logf("  first error: %s", r.FirstError)
				}
				rep.closed[cell{k, c, s.name}] = r
			}
		}
	}

	if io1, err := load.ProcIO(f.pid); err == nil && ioErr == nil {
		n := 0
		for c, r := range rep.closed {
			if c.system == systems[2].name {
				n += r.Requests
			}
		}
		if n > 0 {
			rep.diskPerExchange = float64(io1.WriteBytes-io0.WriteBytes) / float64(n)
			rep.writesPerExchange = float64(io1.SyscW-io0.SyscW) / float64(n)
		}
	}
	for _, rate := range rates {
		var rs []load.Result
		for _, s := range systems {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			t := load.Target{Name: s.name, New: load.NewRequestFunc(load.RESTPost, s.ep, sb.Info.ClientID, fmt.Sprintf("%s-open%d", runID, rate)), Client: load.NewClient(1000)}
			r := load.Open(ctx, t, load.OpenConfig{Rate: float64(rate), Duration: f.openDur, Warmup: time.Second})
			logf("open loop %s", r.String())
			rs = append(rs, r)
		}
		rep.open = append(rep.open, rs)
	}
	rep.openDur = f.openDur

	if f.streamRes != "" {
		b, err := os.ReadFile(f.streamRes)
		if err != nil {
			return err
		}
		rep.stream = &streamResult{}
		if err := json.Unmarshal(b, rep.stream); err != nil {
			return fmt.Errorf("%s: %w", f.streamRes, err)
		}
	}
	rep.write(w)
	return nil
}

type cell struct {
	kind   load.Kind
	conc   int
	system string
}

type memResult struct {
	name              string
	idle, peak, after int64
	ok                int
	err               error
}

func hold(ctx context.Context, logf func(string, ...any), name string, pids []int, base string, newReq func(uint64) (*http.Request, error), n, inFlight int) memResult {
	m := memResult{name: name}
	idle := load.StartSampler(50*time.Millisecond, pids...)
	time.Sleep(200 * time.Millisecond)
	m.idle, _, m.err = idle.Stop()
	u, err := url.Parse(base)
	if err != nil {
		m.err = err
		return m
	}
	s := load.StartSampler(50*time.Millisecond, pids...)
	h := load.Hold(ctx, u.Host, n, inFlight, newReq)
	time.Sleep(time.Second) // let the servers settle with every connection idle
	m.peak, m.after, err = s.Stop()
	h.Close()
	m.ok = h.OK
	if m.err == nil {
		m.err = err
	}
	if h.First != nil {
		logf("memory %s: first error: %v", name, h.First)
	}
	logf("memory %s: %d/%d connections answered, RSS idle %.1f MiB, peak %.1f MiB, holding %.1f MiB", name, h.OK, n, mib(m.idle), mib(m.peak), mib(m.after))
	return m
}
