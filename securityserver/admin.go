package securityserver

import (
	"errors"
	"fmt"
	"net/http"

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

// AdminHandler serves /healthz and /metrics (and, later, the admin API).
func (s *Server) AdminHandler() http.Handler {
	return daemon.NewMux(s.reg, s.Health)
}
