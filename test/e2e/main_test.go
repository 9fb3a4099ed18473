package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/passerelle/passerelle/internal/daemon"
)

// bin is the passerelle binary TestMain built for this run.
var bin string

// TestMain builds the binary once for every test of the package.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "passerelle-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "passerelle")
	build := exec.Command("go", "build", "-o", bin, "github.com/passerelle/passerelle/cmd/passerelle")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cliTimeout bounds one short-lived CLI command.
const cliTimeout = 60 * time.Second

// cli runs `passerelle args...` to completion and returns its combined
// output; a non-zero exit fails the test with that output.
func cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := tryCLI(t, args...)
	if err != nil {
		t.Fatalf("passerelle %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// tryCLI runs `passerelle args...` and returns its output and error.
func tryCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), cliTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	return string(out), err
}

// proc is a long-running passerelle daemon started by a test.
type proc struct {
	name     string
	args     []string
	addrFile string
	logPath  string
	cmd      *exec.Cmd
	done     chan struct{} // closed when the process has exited
	err      error         // its exit status, once done
}

// startProc starts `passerelle args...` as its own process, its output
// going to a log file in logDir, and registers its stop (SIGTERM, then
// SIGKILL) with t.Cleanup. addrFile is where it writes its bound addresses.
// On a failed test the tail of its log is printed.
func startProc(t *testing.T, logDir, name, addrFile string, args ...string) *proc {
	t.Helper()
	os.Remove(addrFile)
	logPath := filepath.Join(logDir, name+".log")
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fmt.Fprintf(f, "==== passerelle %s\n", strings.Join(args, " "))
	p := &proc{name: name, args: args, addrFile: addrFile, logPath: logPath, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("---- %s log (last lines of %s):\n%s", name, logPath, tail(logPath, 40))
		}
	})
	return p
}

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// addrs waits for the process's address file and returns its addresses.
func (p *proc) addrs(t *testing.T) map[string]string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if a, err := daemon.ReadAddrFile(p.addrFile); err == nil {
			return a
		}
		if p.exited() {
			t.Fatalf("%s exited before writing %s: %v\n%s", p.name, p.addrFile, p.err, tail(p.logPath, 40))
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no address file %s after 30 s\n%s", p.name, p.addrFile, tail(p.logPath, 40))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits for a clean exit (SIGKILL after 15 s). It
// reports an unclean exit as a test error.
func (p *proc) stop(t *testing.T) {
	t.Helper()
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s: exit after SIGTERM: %v", p.name, p.err)
		}
	case <-time.After(15 * time.Second):
		t.Errorf("%s: still running 15 s after SIGTERM; killing it", p.name)
		p.kill()
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}

// waitHealthy polls url until it answers 200.
func waitHealthy(t *testing.T, p *proc, url string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last error
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			err = errors.New(resp.Status)
		}
		last = err
		if p != nil && p.exited() {
			t.Fatalf("%s exited: %v\n%s", p.name, p.err, tail(p.logPath, 40))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s not healthy after 30 s: %v", url, last)
}
