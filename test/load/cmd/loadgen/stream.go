package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/passerelle/passerelle/sandbox"
	"github.com/passerelle/passerelle/test/load"
)

// runStream measures a large body streamed through the pair, in a process
// of its own: it starts a sandbox in process, restarts both security
// servers with limits.maxBodyBytes raised and the REST service pointed at a
// streaming backend of its own (the sandbox has no knob for either; its
// sample services stop at 1 MiB), then uploads and downloads one body of
// -size bytes and reports this process's RSS growth. Client and backend
// stream with small buffers, so the growth is the pair's (an upper bound).
func runStream(ctx context.Context, args []string, w, logw io.Writer) error {
	fs := flag.NewFlagSet("stream", flag.ContinueOnError)
	size := fs.Int64("size", 200<<20, "body size in bytes")
	dir := fs.String("dir", "", "where the sandbox goes (default: a new temporary directory, removed)")
	result := fs.String("result", "", "also write the outcome as JSON here (for `loadgen run -stream-result`)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	logf := func(format string, a ...any) { fmt.Fprintf(logw, "loadgen stream: "+format+"\n", a...) }
	if *dir == "" {
		d, err := os.MkdirTemp("", "passerelle-stream-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	sb, err := sandbox.Start(ctx, sandbox.Config{Dir: filepath.Join(*dir, "sb"), Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer sb.Close()

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	backend := &http.Server{Handler: streamBackend(), ReadHeaderTimeout: 10 * time.Second}
	go backend.Serve(ln)
	defer backend.Close()
	backendURL := "http://" + ln.Addr().String()

	info, err := load.LoadSandbox(sb.Dir)
	if err != nil {
		return err
	}
	limit := *size + 1<<20
	for _, in := range []*sandbox.Institution{sb.Consumer, sb.Provider} {
		if err := sb.StopServer(in); err != nil {
			return err
		}
		if err := editConfig(in.ConfigPath, limit, info.HelloURL, backendURL); err != nil {
			return err
		}
	}
	for _, in := range []*sandbox.Institution{sb.Provider, sb.Consumer} {
		if err := sb.RestartServer(ctx, in); err != nil {
			return fmt.Errorf("restarting %s with the raised limit: %w", in.Member, err)
		}
	}
	consumer := "http://" + sb.Consumer.Addrs["consumer"] + "/r1/" + sb.Info.RESTService
	c := load.NewClient(1)
	c.Timeout = 10 * time.Minute

	// A small exchange first, so that connections and caches exist.
	if _, _, err := upload(ctx, c, consumer, sb.Info.ClientID, 1<<10); err != nil {
		return fmt.Errorf("warm-up exchange: %w", err)
	}
	type row struct {
		what       string
		base, peak int64
		elapsed    time.Duration
		err        error
		confirmed  string
	}
	var rows []row
	measure := func(what string, f func() (string, error)) {
		runtime.GC()
		debug.FreeOSMemory()
		time.Sleep(100 * time.Millisecond)
		base, err := load.RSS(os.Getpid())
		if err != nil {
			rows = append(rows, row{what: what, err: err})
			return
		}
		s := load.StartSampler(20*time.Millisecond, os.Getpid())
		start := time.Now()
		confirmed, err := f()
		elapsed := time.Since(start)
		peak, _, serr := s.Stop()
		r := row{what: what, base: base, peak: peak, elapsed: elapsed, err: cmp.Or(err, serr), confirmed: confirmed}
		logf("%s: %v, RSS before %.1f MiB, peak %.1f MiB (%v)", what, elapsed, mib(r.base), mib(r.peak), r.err)
		rows = append(rows, r)
	}
	measure(fmt.Sprintf("upload: POST of %d MiB through the pair (the service answers its SHA-256)", *size>>20), func() (string, error) {
		sum, n, err := upload(ctx, c, consumer, sb.Info.ClientID, *size)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d bytes, SHA-256 matches: %v", n, sum), nil
	})
	measure(fmt.Sprintf("download: GET of a %d MiB answer through the pair", *size>>20), func() (string, error) {
		n, ok, err := download(ctx, c, consumer, sb.Info.ClientID, *size)
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("%d bytes, content as sent: %v", n, ok), nil
	})

	fmt.Fprintf(w, "### A %d MiB body streamed through the pair\n\n", *size>>20)
	fmt.Fprintf(w, "`loadgen stream`, its own process: an in-process sandbox whose two servers are restarted with `limits.maxBodyBytes` = %d MiB and the REST service pointed at a streaming backend (the sandbox has no knob for either). RSS of that whole process (client, backend, both servers), sampled every 20 ms; baseline = its RSS just before the transfer.\n\n", limit>>20)
	fmt.Fprintf(w, "| transfer | time s | MiB/s | RSS before MiB | peak RSS MiB | **growth MiB** | growth ÷ body | check |\n|---|--:|--:|--:|--:|--:|--:|---|\n")
	worst := int64(0)
	failed := false
	for _, r := range rows {
		if r.err != nil {
			failed = true
			fmt.Fprintf(w, "| %s | – | – | – | – | – | – | failed: %v |\n", r.what, r.err)
			continue
		}
		g := r.peak - r.base
		worst = max(worst, g)
		fmt.Fprintf(w, "| %s | %.1f | %.0f | %.1f | %.1f | **%.1f** | %.2f | %s |\n", r.what, r.elapsed.Seconds(),
			float64(*size)/(1<<20)/r.elapsed.Seconds(), mib(r.base), mib(r.peak), mib(g), float64(g)/float64(*size), r.confirmed)
	}
	holds := "yes"
	if failed || worst > goalBodyGrowth {
		holds = "**no**"
	}
	fmt.Fprintf(w, "\nGoal: a 200 MiB body with ≤ %d MiB RSS growth — worst growth %.1f MiB: %s.\n", goalBodyGrowth>>20, mib(worst), holds)
	if *result != "" {
		b, err := json.Marshal(streamResult{Size: *size, WorstGrowth: worst, Failed: failed})
		if err != nil {
			return err
		}
		return os.WriteFile(*result, b, 0o644)
	}
	return nil
}

// streamResult is what `loadgen stream -result` writes.
type streamResult struct {
	Size        int64 `json:"size"`
	WorstGrowth int64 `json:"worstGrowth"`
	Failed      bool  `json:"failed"`
}

// editConfig raises limits.maxBodyBytes in a server.yaml and points the
// service at from to to.
func editConfig(path string, limit int64, from, to string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i := strings.Index(s, "maxBodyBytes: ")
	if i < 0 {
		return fmt.Errorf("%s: no limits.maxBodyBytes", path)
	}
	j := i + strings.IndexByte(s[i:], '\n')
	s = s[:i] + "maxBodyBytes: " + strconv.FormatInt(limit, 10) + s[j:]
	s = strings.ReplaceAll(s, "url: "+from+"\n", "url: "+to+"\n")
	return os.WriteFile(path, []byte(s), 0o600)
}

// pattern is an endless deterministic byte stream.
type pattern struct{ off int64 }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		b[i] = byte(p.off*7 + p.off>>11)
		p.off++
	}
	return len(b), nil
}

func patternSum(n int64) [32]byte {
	h := sha256.New()
	io.Copy(h, io.LimitReader(&pattern{}, n))
	var s [32]byte
	h.Sum(s[:0])
	return s
}

// streamBackend: POST answers {"bytes":N,"sha256":"…"} of what it read;
// GET ?n=N streams N pattern bytes.
func streamBackend() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet {
			n, err := strconv.ParseInt(r.URL.Query().Get("n"), 10, 64)
			if err != nil || n < 0 {
				http.Error(w, "bad n", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			io.Copy(w, io.LimitReader(&pattern{}, n))
			return
		}
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"bytes": n, "sha256": hex.EncodeToString(h.Sum(nil))})
	})
}

func upload(ctx context.Context, c *http.Client, base, client string, n int64) (bool, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/upload", io.LimitReader(&pattern{}, n))
	if err != nil {
		return false, 0, err
	}
	req.ContentLength = n
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("X-Road-Client", client)
	resp, err := c.Do(req)
	if err != nil {
		return false, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return false, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return false, 0, fmt.Errorf("%w %d: %s", load.ErrStatus, resp.StatusCode, bytes.TrimSpace(body))
	}
	var got struct {
		Bytes  int64  `json:"bytes"`
		SHA256 string `json:"sha256"`
	}
	if err := json.Unmarshal(body, &got); err != nil {
		return false, 0, err
	}
	want := patternSum(n)
	return got.Bytes == n && got.SHA256 == hex.EncodeToString(want[:]), got.Bytes, nil
}

func download(ctx context.Context, c *http.Client, base, client string, n int64) (int64, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/download?n="+strconv.FormatInt(n, 10), nil)
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("X-Road-Client", client)
	resp, err := c.Do(req)
	if err != nil {
		return 0, false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return 0, false, fmt.Errorf("%w %d: %s", load.ErrStatus, resp.StatusCode, bytes.TrimSpace(b))
	}
	h := sha256.New()
	got, err := io.Copy(h, resp.Body)
	if err != nil {
		return got, false, err
	}
	want := patternSum(n)
	return got, got == n && bytes.Equal(h.Sum(nil), want[:]), nil
}
