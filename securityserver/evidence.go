package securityserver

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/securityserver/evidence"
)

// registerEvidenceRoutes adds the evidence export to the admin API:
//
//	GET /api/v1/exchanges/{xroadId}/evidence[?client=I/C/M[/S]]
//
// answers the exchange's evidence bundle (application/zip, see
// docs/evidence.md), or an admin error: 404 unknown exchange, 409 several
// exchanges with that id (name the client), 400 a bad client identifier.
func (s *Server) registerEvidenceRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/exchanges/{xroadId}/evidence", s.serveEvidence)
}

func (s *Server) serveEvidence(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("xroadId")
	var client pki.ClientID
	if c := r.URL.Query().Get("client"); c != "" {
		var err error
		if client, err = pki.ParseClientID(c); err != nil {
			writeAdminError(w, http.StatusBadRequest, "bad_request", "client: "+err.Error())
			return
		}
	}
	log := s.log.With("messageId", id)
	ex, err := evidence.Export(r.Context(), s.mlog, s.owner, id, client)
	switch {
	case errors.Is(err, evidence.ErrNotFound):
		writeAdminError(w, http.StatusNotFound, "not_found", "no exchange with this message id in the message log")
		return
	case errors.Is(err, evidence.ErrAmbiguous):
		writeAdminError(w, http.StatusConflict, "ambiguous", "several exchanges carry this message id: name the client with ?client=")
		return
	case err != nil:
		log.Error("evidence export failed", "err", err)
		writeAdminError(w, http.StatusInternalServerError, "internal_error", "the message log could not be read")
		return
	}
	h := w.Header()
	h.Set("Content-Type", evidence.ContentType)
	h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", "evidence-"+safeFileName(id)+".zip"))
	h.Set("Cache-Control", "no-store")
	// Streamed: a failure past this point truncates the ZIP, which then
	// does not open (its central directory is written last).
	if err := evidence.Write(r.Context(), w, s.mlog, ex, time.Now()); err != nil {
		log.Error("evidence export interrupted", "err", err)
		return
	}
	log.Info("evidence exported", "request", ex.Request.Hash.String(), "response", ex.Response != nil)
}

// safeFileName keeps the characters of a message id that are safe in a
// file name.
func safeFileName(id string) string {
	out := strings.Map(func(c rune) rune {
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' {
			return c
		}
		return '_'
	}, id)
	if len(out) > 64 {
		out = out[:64]
	}
	return out
}
