package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// ErrRunning reports a Start of a service that is already running.
var ErrRunning = errors.New("sandbox: service already running")

// server is what a Service runs on its listener: an http.Server, a
// grpc.Server, a relay. serve blocks until stop is called.
type server interface {
	serve(ln net.Listener) error
	stop()
}

// Service is one of the sandbox's network services (the OCSP responder, the
// TSA, the registry's two listeners, the directory, the sample services).
// It keeps its address across Stop and Start, so that tests can take a
// service down and bring it back where the federation expects it.
type Service struct {
	Name string
	log  *slog.Logger
	mk   func() server // a fresh server for every Start

	mu      sync.Mutex
	addr    string
	cur     server
	done    chan error
	running bool
}

func newService(name string, log *slog.Logger, ln net.Listener, mk func() server) *Service {
	s := &Service{Name: name, log: log, mk: mk, addr: ln.Addr().String()}
	s.serveOn(ln)
	return s
}

// Addr is the service's host:port.
func (s *Service) Addr() string { return s.addr }

// URL is http://host:port.
func (s *Service) URL() string { return "http://" + s.addr }

// Running reports whether the service is up.
func (s *Service) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.running
}

func (s *Service) serveOn(ln net.Listener) {
	srv := s.mk()
	done := make(chan error, 1)
	s.mu.Lock()
	s.cur, s.done, s.running = srv, done, true
	s.mu.Unlock()
	go func() {
		err := srv.serve(ln)
		if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			s.log.Error("sandbox service stopped", "service", s.Name, "err", err)
		}
		done <- err
	}()
}

// Stop takes the service down: its listener is closed and open connections
// are cut. Stopping a stopped service does nothing.
func (s *Service) Stop() {
	s.mu.Lock()
	srv, done, running := s.cur, s.done, s.running
	s.running = false
	s.mu.Unlock()
	if !running {
		return
	}
	srv.stop()
	<-done
}

// Start brings a stopped service back on the same address.
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	if running {
		return fmt.Errorf("%s: %w", s.Name, ErrRunning)
	}
	var lc net.ListenConfig
	var ln net.Listener
	var err error
	// The port was ours a moment ago; the kernel may take an instant to free it.
	for i := 0; i < 50; i++ {
		if ln, err = lc.Listen(ctx, "tcp", s.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("%s: listen again on %s: %w", s.Name, s.addr, err)
	}
	s.serveOn(ln)
	return nil
}

// httpServer serves an http.Handler.
type httpServer struct{ srv *http.Server }

func newHTTPServer(h http.Handler, log *slog.Logger) server {
	return &httpServer{srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}}
}

func (h *httpServer) serve(ln net.Listener) error { return h.srv.Serve(ln) }

func (h *httpServer) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := h.srv.Shutdown(ctx); err != nil {
		h.srv.Close()
	}
}

// relay forwards TCP connections to a target set once it is known. The
// sandbox lists a relay's address in the directory as a security server's
// provider address when that server's own port is chosen by the OS only once
// it runs (port base 0): the directory must be signed before the server
// starts. The relay passes TLS through untouched.
type relay struct {
	target func() string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

func newRelay(target func() string) server {
	return &relay{target: target, conns: map[net.Conn]struct{}{}}
}

func (r *relay) track(c net.Conn, add bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if add {
		if r.conns == nil {
			return false
		}
		r.conns[c] = struct{}{}
	} else {
		delete(r.conns, c)
	}
	return true
}

func (r *relay) serve(ln net.Listener) error {
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			r.wg.Wait()
			return err
		}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			r.forward(c)
		}()
	}
}

func (r *relay) forward(c net.Conn) {
	defer c.Close()
	target := r.target()
	if target == "" {
		return
	}
	d, err := net.DialTimeout("tcp", target, 5*time.Second)
	if err != nil {
		return
	}
	defer d.Close()
	if !r.track(c, true) || !r.track(d, true) {
		return
	}
	defer r.track(c, false)
	defer r.track(d, false)
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(d, c)
	go pipe(c, d)
	<-done
	<-done
}

func (r *relay) stop() {
	r.mu.Lock()
	ln, conns := r.ln, r.conns
	r.conns = nil
	r.mu.Unlock()
	if ln != nil {
		ln.Close()
	}
	for c := range conns {
		c.Close()
	}
}
