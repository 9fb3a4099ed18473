package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/passerelle/passerelle/sandbox"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestSandboxCommand starts `passerelle sandbox --port-base 0`, waits for
// its curl commands, then stops it as Ctrl-C would.
func TestSandboxCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "sb")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	cmd := newSandboxCmd()
	var out syncBuffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"--dir", dir, "--port-base", "0", "--quiet"})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "Ctrl-C stops everything") {
		select {
		case err := <-done:
			t.Fatalf("sandbox exited early: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no curl commands after 30 s:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	info, err := sandbox.LoadInfo(filepath.Join(dir, sandbox.InfoFile))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"curl -s -H 'X-Road-Client: SANDBOX/GOV/CONSUMER/client' '" + info.ConsumerURL + "/r1/SANDBOX/GOV/PROVIDER/services/hello/anything?q=1'",
		"--data-binary @" + filepath.Join(dir, sandbox.SampleSOAPFile)} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	if _, err := os.Stat(filepath.Join(dir, sandbox.SampleSOAPFile)); err != nil {
		t.Error(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("sandbox after Ctrl-C: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sandbox did not stop")
	}
}
