package load

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// ErrNoRSS reports a /proc status file without a VmRSS line (a zombie, or
// not Linux).
var ErrNoRSS = errors.New("load: no VmRSS in /proc status")

// ParseVmRSS returns the VmRSS of a /proc/PID/status file's content, in bytes.
func ParseVmRSS(status []byte) (int64, error) {
	for line := range bytes.Lines(status) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := strings.Fields(string(rest))
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("load: malformed VmRSS line %q", bytes.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb < 0 || kb > 1<<40 {
			return 0, fmt.Errorf("load: malformed VmRSS line %q", bytes.TrimSpace(line))
		}
		return kb << 10, nil
	}
	return 0, ErrNoRSS
}

// RSS is the resident set size of process pid, in bytes.
func RSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return ParseVmRSS(b)
}

// Children lists the child processes of pid (from every thread's children
// file; needs a kernel with CONFIG_PROC_CHILDREN, as Debian's has).
func Children(pid int) []int {
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	var out []int
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, t.Name()))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				out = append(out, c)
			}
		}
	}
	return out
}

// TreeRSS is the summed resident set of pid and all its descendants (for
// nginx: the master and its workers). Shared pages count once per process,
// so this over-counts; it is an upper bound.
func TreeRSS(pid int) (int64, error) {
	total, err := RSS(pid)
	if err != nil {
		return 0, err
	}
	for _, c := range Children(pid) {
		if r, err := TreeRSS(c); err == nil {
			total += r
		}
	}
	return total, nil
}

// Sampler samples a process tree's RSS every interval and keeps the peak.
type Sampler struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	peak int64
	last int64
	err  error
}

// StartSampler samples the summed TreeRSS of pids every interval until Stop.
func StartSampler(interval time.Duration, pids ...int) *Sampler {
	s := &Sampler{stop: make(chan struct{}), done: make(chan struct{})}
	sample := func() {
		var total int64
		var err error
		for _, pid := range pids {
			r, e := TreeRSS(pid)
			total += r
			err = cmp.Or(err, e)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			if s.err == nil {
				s.err = err
			}
			return
		}
		s.last = total
		s.peak = max(s.peak, total)
	}
	sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				sample()
			case <-s.stop:
				sample()
				return
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the peak and the last sample (bytes).
func (s *Sampler) Stop() (peak, last int64, err error) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.last, s.err
}

// Held is a set of open keep-alive connections made by Hold.
type Held struct {
	conns []net.Conn
	OK    int // connections whose request got a 200
	First error
}

// Close closes every held connection.
func (h *Held) Close() {
	for _, c := range h.conns {
		c.Close()
	}
}

// Hold opens n TCP connections to addr (host:port) at once, sends one
// request on each (built by newReq, written as HTTP/1.1 with keep-alive),
// with at most inFlight requests outstanding at a time (≤ 0: all at once),
// reads the answer and keeps the connection open and idle. It returns when
// every connection has its answer or failed; Close releases them.
func Hold(ctx context.Context, addr string, n, inFlight int, newReq func(i uint64) (*http.Request, error)) *Held {
	h := &Held{}
	if inFlight <= 0 {
		inFlight = n
	}
	sem := make(chan struct{}, inFlight)
	var mu sync.Mutex
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			err := func() error {
				var d net.Dialer
				c, err := d.DialContext(ctx, "tcp", addr)
				if err != nil {
					return err
				}
				mu.Lock()
				h.conns = append(h.conns, c)
				mu.Unlock()
				req, err := newReq(uint64(i))
				if err != nil {
					return err
				}
				<-start // every connection is open: send the requests
				sem <- struct{}{}
				defer func() { <-sem }()
				if err := req.Write(c); err != nil {
					return err
				}
				resp, err := http.ReadResponse(bufio.NewReader(c), req)
				if err != nil {
					return err
				}
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if err != nil {
					return err
				}
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("%w %d", ErrStatus, resp.StatusCode)
				}
				return nil
			}()
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if h.First == nil {
					h.First = err
				}
				return
			}
			h.OK++
		})
	}
	// Let the dials happen, then release the requests.
	time.Sleep(200 * time.Millisecond)
	close(start)
	wg.Wait()
	return h
}

// IOStats are a process's I/O counters from /proc/PID/io.
type IOStats struct {
	WriteBytes int64 // bytes the process caused to be written to storage
	SyscW      int64 // write-like system calls
}

// ParseIO parses the content of /proc/PID/io.
func ParseIO(b []byte) (IOStats, error) {
	var s IOStats
	found := 0
	for line := range bytes.Lines(b) {
		k, v, ok := strings.Cut(strings.TrimSpace(string(line)), ":")
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			continue
		}
		switch k {
		case "write_bytes":
			s.WriteBytes, found = n, found+1
		case "syscw":
			s.SyscW, found = n, found+1
		}
	}
	if found != 2 {
		return s, fmt.Errorf("load: /proc io without write_bytes and syscw")
	}
	return s, nil
}

// ProcIO reads /proc/PID/io (needs the same user or root).
func ProcIO(pid int) (IOStats, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return IOStats{}, err
	}
	return ParseIO(b)
}

// FsyncProbe writes and fsyncs a 4 KiB block n times in a new file under dir
// and returns the sorted latencies: what one durable commit costs on that
// disk now, the baseline for a server that fsyncs per message.
func FsyncProbe(dir string, n int) ([]time.Duration, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	lat := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if _, err := f.WriteAt(buf, int64(i%256)*4096); err != nil {
			return nil, err
		}
		if err := f.Sync(); err != nil {
			return nil, err
		}
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	return lat, nil
}
