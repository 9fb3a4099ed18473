package messagelog

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

const crashEnv = "MESSAGELOG_CRASH_CHILD_DIR"

// crashRecord is record n of the crash test: every fifth has a body past
// the threshold, so that blob files are exercised too.
func crashRecord(n int) Record {
	body := 200
	if n%5 == 0 {
		body = 3000
	}
	return request(n, 300, body)
}

// TestCrashKill9 re-executes the test binary as a child that appends in a
// loop from several goroutines and prints every acknowledged id; the parent
// SIGKILLs it mid-flight, reopens the log and checks that every
// acknowledged record is present and intact.
func TestCrashKill9(t *testing.T) {
	if dir := os.Getenv(crashEnv); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("spawns a subprocess")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKill9$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[uint64]int{} // id -> record number
	sc := bufio.NewScanner(out)
	deadline := time.Now().Add(30 * time.Second)
	killed := false
	for sc.Scan() {
		var id uint64
		var n int
		if _, err := fmt.Sscanf(sc.Text(), "ack %d %d", &id, &n); err != nil {
			continue // a line cut by the kill
		}
		acked[id] = n
		if !killed && (len(acked) >= 400 || time.Now().After(deadline)) {
			if err := cmd.Process.Kill(); err != nil { // SIGKILL
				t.Fatal(err)
			}
			killed = true // keep reading what the child printed before dying
		}
	}
	io.Copy(io.Discard, out)
	err = cmd.Wait()
	if !killed {
		t.Fatalf("child exited before being killed: %v", err)
	}
	if len(acked) == 0 {
		t.Fatal("child acknowledged nothing")
	}

	l := openLog(t, Config{Dir: dir, InlineThreshold: 1024})
	for id, n := range acked {
		r, err := l.Get(t.Context(), id)
		if err != nil {
			t.Fatalf("acknowledged record %d (#%d) after kill -9: %v", id, n, err)
		}
		want := crashRecord(n)
		if r.MessageID != want.MessageID || !bytes.Equal(r.Signed, want.Signed) || r.Hash != HashOf(want.Signed) {
			t.Errorf("record %d = %s, want %s", id, r.MessageID, want.MessageID)
		}
		if b := readBody(t, l, r); !bytes.Equal(b, want.Body) {
			t.Errorf("record %d: body of %d bytes differs from the %d appended", id, len(b), len(want.Body))
		}
	}
	// Whatever the child had in flight either committed whole or is gone;
	// the log keeps working.
	st := l.Stats()
	t.Logf("child acknowledged %d records; %d in the log after kill -9", len(acked), st.Records)
	if st.Records < uint64(len(acked)) {
		t.Errorf("Stats().Records = %d, want at least %d", st.Records, len(acked))
	}
	mustAppend(t, l, request(1<<30, 10, 10))
	var pending int
	l.Pending(t.Context(), func(PendingEntry) error { pending++; return nil })
	if pending != int(st.Records)+1 {
		t.Errorf("pending = %d, want %d", pending, st.Records+1)
	}
}

// crashChild appends until killed, printing "ack <id> <n>" once each Append
// has returned.
func crashChild(dir string) {
	l, err := Open(context.Background(), Config{Dir: dir, InlineThreshold: 1024, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		fmt.Fprintln(os.Stderr, "child:", err)
		os.Exit(2)
	}
	var mu sync.Mutex
	w := bufio.NewWriter(os.Stdout)
	const writers = 8
	for g := range writers {
		go func() {
			for i := 0; ; i++ {
				n := i*writers + g
				id, err := l.Append(context.Background(), crashRecord(n))
				if err != nil {
					fmt.Fprintln(os.Stderr, "child append:", err)
					os.Exit(2)
				}
				mu.Lock()
				w.WriteString("ack " + strconv.FormatUint(id, 10) + " " + strconv.Itoa(n) + "\n")
				w.Flush()
				mu.Unlock()
			}
		}()
	}
	select {}
}
