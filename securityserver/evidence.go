package securityserver

import "net/http"

// registerEvidenceRoutes adds the evidence export to the admin API.
func (s *Server) registerEvidenceRoutes(mux *http.ServeMux) {}
