package securityserver

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/google/uuid"

	"github.com/passerelle/passerelle/internal/daemon"
)

// Health reports what stops the server from carrying traffic: an expired
// directory, a stale OCSP response for its own certificates, or a TSA outage
// past the failure period. nil means healthy.
func (s *Server) Health() error {
	var errs []error
	doc, err := s.dir.Current()
	if err != nil {
		errs = append(errs, fmt.Errorf("federation directory: %w", err))
	} else if age := s.batcher.PendingAge(); age > doc.Params.TimestampFailurePeriod() {
		errs = append(errs, fmt.Errorf("timestamping: oldest message waiting %s, past the failure period %s", age.Round(1e9), doc.Params.TimestampFailurePeriod()))
	}
	if _, err := s.signStapler.Staple(); err != nil {
		errs = append(errs, fmt.Errorf("OCSP for the signing certificate: %w", err))
	}
	if _, err := s.authStapler.Staple(); err != nil {
		errs = append(errs, fmt.Errorf("OCSP for the TLS certificate: %w", err))
	}
	return errors.Join(errs...)
}

// AdminHandler serves /healthz and /metrics, and the admin API under
// /api/v1/ (bearer token from Config.AdminTokenFile; disabled without one).
func (s *Server) AdminHandler() http.Handler {
	mux := daemon.NewMux(s.reg, s.Health)
	api := http.NewServeMux()
	s.registerEvidenceRoutes(api)
	s.registerAdminRoutes(api)
	mux.Handle("/api/v1/", s.requireAdminToken(api))
	return mux
}

// minAdminTokenLen bounds how weak an admin token may be.
const minAdminTokenLen = 32

// loadAdminToken reads the admin token file, refusing a short token or a file
// readable by group or others.
func loadAdminToken(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s has mode %v; want 0600", path, fi.Mode().Perm())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	tok := bytes.TrimSpace(data)
	if len(tok) < minAdminTokenLen {
		return nil, fmt.Errorf("%s: the token must be at least %d characters", path, minAdminTokenLen)
	}
	return tok, nil
}

// requireAdminToken admits requests carrying "Authorization: Bearer TOKEN";
// the comparison is constant-time and failures say nothing about the token.
func (s *Server) requireAdminToken(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.adminToken == nil {
			writeAdminError(w, http.StatusNotFound, "admin_api_disabled", "the admin API is disabled: set adminTokenFile")
			return
		}
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), s.adminToken) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="passerelle-admin"`)
			writeAdminError(w, http.StatusUnauthorized, "unauthorized", "a valid admin bearer token is required")
			return
		}
		h.ServeHTTP(w, r)
	})
}

// writeAdminError writes the admin API's error body: the interoperability
// norms' {"code","error"} plus X-Road's type/message/detail fields.
func writeAdminError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{
		"type": "Server.Admin." + code, "message": msg, "detail": uuid.NewString(), "code": code, "error": msg,
	})
}
