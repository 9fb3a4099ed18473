// Package daemon holds what every long-running passerelle command shares:
// JSON logging to stderr, listeners on possibly OS-chosen ports reported in a
// log line and an address file, /healthz and /metrics, and graceful shutdown
// when the context ends (SIGTERM/SIGINT in main).
//
// Entry points: Logger, Listen, WriteAddrFile, NewMux, ServeHTTP.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// ShutdownGrace is how long ServeHTTP lets in-flight requests finish.
const ShutdownGrace = 10 * time.Second

// Logger returns a JSON logger on stderr, the one format of every daemon.
func Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// Listen opens a TCP listener ("127.0.0.1:0" picks a free port) and logs
// the address it bound under name.
func Listen(ctx context.Context, log *slog.Logger, name, addr string) (net.Listener, error) {
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen %s on %s: %w", name, addr, err)
	}
	log.Info("listening", "listener", name, "addr", ln.Addr().String())
	return ln, nil
}

// WriteAddrFile writes the bound addresses, as a JSON object of listener name
// to host:port, atomically to path (nothing when path is empty). Tests and
// scripts start daemons on port 0 and read this file.
func WriteAddrFile(path string, addrs map[string]string) error {
	if path == "" {
		return nil
	}
	data, err := json.MarshalIndent(addrs, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".addr*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// ReadAddrFile reads a file written by WriteAddrFile.
func ReadAddrFile(path string) (map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var addrs map[string]string
	if err := json.Unmarshal(data, &addrs); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return addrs, nil
}

// NewRegistry returns a Prometheus registry holding the Go runtime and
// process collectors, the base every daemon adds its own metrics to.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// NewMux returns a mux serving /healthz (200 "ok", or 503 with the reason
// health returns) and /metrics from reg (a new registry with the Go and
// process collectors when reg is nil).
func NewMux(reg *prometheus.Registry, health func() error) *http.ServeMux {
	if reg == nil {
		reg = NewRegistry()
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if health != nil {
			if err := health(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "unhealthy: %v\n", err)
				return
			}
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// ServeHTTP serves h on ln until ctx ends, then shuts down gracefully,
// letting in-flight requests finish for up to ShutdownGrace.
func ServeHTTP(ctx context.Context, log *slog.Logger, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return Serve(ctx, srv, ln)
}

// Serve runs srv on ln until ctx ends, then shuts it down gracefully.
func Serve(ctx context.Context, srv *http.Server, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ShutdownGrace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if serr := <-errc; serr != nil && !errors.Is(serr, http.ErrServerClosed) {
		return serr
	}
	return err
}
