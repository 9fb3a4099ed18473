package timestamp

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The crash test re-executes the test binary as a child that adds hashes to a
// Batcher (with a working TSA, so some batches are stamped and delivered and
// others pending) and prints every hash whose Add returned, and every hash
// delivered. The parent kills it with SIGKILL mid-stream, reopens the file
// and checks that each reported hash is delivered or still pending, and
// then gets delivered.
const crashChildEnv = "PASSERELLE_TIMESTAMP_CRASH_CHILD"

func TestMain(m *testing.M) {
	if path := os.Getenv(crashChildEnv); path != "" {
		crashChild(path)
		return
	}
	os.Exit(m.Run())
}

// crashChild runs until killed.
func crashChild(path string) {
	t := &childTB{}
	tsa := newTestTSA(t)
	c, err := NewClient(ClientConfig{URL: tsa.http.URL, Roots: tsa.ca.Pool()})
	if err != nil {
		panic(err)
	}
	var outMu sync.Mutex
	say := func(kind string, h Hash) {
		outMu.Lock()
		defer outMu.Unlock()
		// One write(2) per line: a line in the pipe survives SIGKILL.
		os.Stdout.Write([]byte(kind + " " + hex.EncodeToString(h[:]) + "\n"))
	}
	b, err := NewBatcher(BatcherConfig{
		Path: path, TSAs: []Stamper{c}, MaxBatch: 64, Interval: 20 * time.Millisecond, Log: quietLog,
		Deliver: func(_ context.Context, ss []Stamp) error {
			for _, s := range ss {
				say("delivered", s.Hash)
			}
			return nil
		},
	})
	if err != nil {
		panic(err)
	}
	go b.Run(context.Background())
	var wg sync.WaitGroup
	for w := range 32 {
		wg.Go(func() {
			for i := 0; ; i++ {
				h := sha256.Sum256(fmt.Appendf(nil, "crash %d %d", w, i))
				if err := b.Add(context.Background(), h); err != nil {
					panic(err)
				}
				say("added", h)
			}
		})
	}
	wg.Wait()
}

// childTB lets the test helpers run outside a test; cleanups never run
// (the process is killed).
type childTB struct{ testing.TB }

func (*childTB) Helper()                   {}
func (*childTB) Cleanup(func())            {}
func (*childTB) TempDir() string           { d, _ := os.MkdirTemp("", "crashchild"); return d }
func (*childTB) Fatal(args ...any)         { panic(fmt.Sprint(args...)) }
func (*childTB) Fatalf(f string, a ...any) { panic(fmt.Sprintf(f, a...)) }

func TestBatcherSurvivesKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a subprocess")
	}
	path := filepath.Join(t.TempDir(), "batcher.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashChildEnv+"="+path)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	added := map[string]bool{}
	delivered := map[string]bool{}
	sc := bufio.NewScanner(out)
	killed := false
	for sc.Scan() {
		kind, h, _ := strings.Cut(sc.Text(), " ")
		switch kind {
		case "added":
			added[h] = true
		case "delivered":
			delivered[h] = true
		}
		// Kill once some batches were delivered and more is pending.
		if !killed && len(added) >= 1000 && len(delivered) > 0 {
			cmd.Process.Signal(syscall.SIGKILL)
			killed = true
		}
	}
	cmd.Wait()
	if !killed {
		t.Fatalf("child exited before the kill (added %d, delivered %d)", len(added), len(delivered))
	}
	t.Logf("child: %d added, %d delivered before SIGKILL", len(added), len(delivered))

	tsa := newTestTSA(t)
	col := newCollector()
	b := newBatcher(t, path, []Stamper{tsa.client(t, nil)}, col, nil)
	defer b.Close()
	t.Logf("after restart: %d pending", b.Pending())
	if err := b.Flush(t.Context()); err != nil {
		t.Fatalf("Flush = %v", err)
	}
	var lost int
	for h := range added {
		raw, _ := hex.DecodeString(h)
		var hh Hash
		copy(hh[:], raw)
		if _, ok := col.stamps[hh]; !ok && !delivered[h] {
			lost++
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d hashes whose Add returned were neither delivered before the crash nor after restart", lost, len(added))
	}
	if b.Pending() != 0 {
		t.Errorf("pending after flush = %d, want 0", b.Pending())
	}
}
