package securityserver

import (
	"bytes"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/ocsp"
)

// The admin API, under /api/v1/ on the admin listener, behind the admin
// bearer token (admin.go). It follows the interoperability norms: plural
// nouns, camelCase JSON, the error format, page/elementsParPage pagination
// with Link headers, POST of one object or an array, PUT full update,
// DELETE → 204, and its OpenAPI description at /api/v1/openapi.json.
// Identifiers go in the path percent-encoded as one segment
// (SANDBOX%2FGOV%2FCONSUMER%2Fclient).
//
//	GET    /api/v1/clients                       list (paginated)
//	POST   /api/v1/clients                       add one or several
//	GET    /api/v1/clients/{id}                  show
//	PUT    /api/v1/clients/{id}                  replace
//	DELETE /api/v1/clients/{id}                  remove
//	GET    /api/v1/services                      list (paginated)
//	POST   /api/v1/services                      add one or several
//	GET    /api/v1/services/{id}                 show
//	PUT    /api/v1/services/{id}                 replace (backend URL, TLS, timeout, body logging, grants)
//	DELETE /api/v1/services/{id}                 remove
//	GET    /api/v1/services/{id}/grants          the service's grants
//	POST   /api/v1/services/{id}/grants          grant access (an AccessRule, or several)
//	DELETE /api/v1/services/{id}/grants/{client} revoke every grant of that client
//	GET    /api/v1/keys                          key and certificate status (expiry, OCSP age)
//	GET    /api/v1/changes                       the audit record of changes (paginated)
//
// Every change applies at once (the next request sees it), persists in
// DATADIR/admin/state.json and is recorded in DATADIR/admin/audit.jsonl.

//go:embed adminapi_openapi.json
var adminOpenAPI []byte

// adminActions are the actions the audit record names.
var adminActions = []string{"addClient", "updateClient", "removeClient", "addService", "updateService", "removeService", "grantAccess", "revokeAccess"}

// adminActor names who made a change: the admin token has one name.
const adminActor = "admin"

// DefaultElementsPerPage is the admin API's page size by default.
const DefaultElementsPerPage = 30

// maxElementsPerPage bounds elementsParPage.
const maxElementsPerPage = 1000

// maxAdminBody bounds an admin API request body.
const maxAdminBody = 1 << 20

func (s *Server) registerAdminRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		w.Write(adminOpenAPI)
	})
	mux.HandleFunc("GET /api/v1/clients", s.listClientsAPI)
	mux.HandleFunc("POST /api/v1/clients", s.addClientsAPI)
	mux.HandleFunc("GET /api/v1/clients/{id}", s.getClientAPI)
	mux.HandleFunc("PUT /api/v1/clients/{id}", s.putClientAPI)
	mux.HandleFunc("DELETE /api/v1/clients/{id}", s.deleteClientAPI)
	mux.HandleFunc("GET /api/v1/services", s.listServicesAPI)
	mux.HandleFunc("POST /api/v1/services", s.addServicesAPI)
	mux.HandleFunc("GET /api/v1/services/{id}", s.getServiceAPI)
	mux.HandleFunc("PUT /api/v1/services/{id}", s.putServiceAPI)
	mux.HandleFunc("DELETE /api/v1/services/{id}", s.deleteServiceAPI)
	mux.HandleFunc("GET /api/v1/services/{id}/grants", s.listGrantsAPI)
	mux.HandleFunc("POST /api/v1/services/{id}/grants", s.grantAPI)
	mux.HandleFunc("DELETE /api/v1/services/{id}/grants/{client}", s.revokeAPI)
	mux.HandleFunc("GET /api/v1/keys", s.keysAPI)
	mux.HandleFunc("GET /api/v1/changes", s.changesAPI)
}

// --- clients ---

func (s *Server) clientList() []ClientConfig {
	snap := s.store.load()
	out := make([]ClientConfig, 0, len(snap.clientIDs))
	for _, id := range snap.clientIDs {
		c, _ := pki.ParseSubsystemID(id)
		out = append(out, snap.clients[c].cfg)
	}
	return out
}

func (s *Server) listClientsAPI(w http.ResponseWriter, r *http.Request) {
	writePage(w, r, s.clientList())
}

func (s *Server) getClientAPI(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	for _, c := range s.clientList() {
		if c.ID == id {
			writeJSON(w, http.StatusOK, c)
			return
		}
	}
	writeAdminErr(w, fmt.Errorf("client %s: %w", id, ErrNotFound))
}

func (s *Server) addClientsAPI(w http.ResponseWriter, r *http.Request) {
	var in []ClientConfig
	if err := decodeOneOrMany(r, &in); err != nil {
		writeAdminErr(w, err)
		return
	}
	for _, c := range in {
		err := s.store.change(s.auditRecord(r, "addClient", c.ID, c), func(ov *overlay, cs []ClientConfig, _ []ServiceConfig) error {
			if slices.ContainsFunc(cs, func(x ClientConfig) bool { return x.ID == c.ID }) {
				return fmt.Errorf("client %s: %w", c.ID, ErrExists)
			}
			ov.Clients[c.ID] = &c
			return nil
		})
		if err != nil {
			writeAdminErr(w, err)
			return
		}
	}
	writeJSON(w, http.StatusCreated, in)
}

func (s *Server) putClientAPI(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var c ClientConfig
	if err := decodeJSON(r, &c); err != nil {
		writeAdminErr(w, err)
		return
	}
	if c.ID == "" {
		c.ID = id
	}
	if c.ID != id {
		writeAdminErr(w, fmt.Errorf("%w: the body's id %s differs from the path's %s", errBadRequest, c.ID, id))
		return
	}
	err := s.store.change(s.auditRecord(r, "updateClient", id, c), func(ov *overlay, cs []ClientConfig, _ []ServiceConfig) error {
		if !slices.ContainsFunc(cs, func(x ClientConfig) bool { return x.ID == id }) {
			return fmt.Errorf("client %s: %w", id, ErrNotFound)
		}
		ov.Clients[id] = &c
		return nil
	})
	if err != nil {
		writeAdminErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) deleteClientAPI(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := s.store.change(s.auditRecord(r, "removeClient", id, nil), func(ov *overlay, cs []ClientConfig, _ []ServiceConfig) error {
		if !slices.ContainsFunc(cs, func(x ClientConfig) bool { return x.ID == id }) {
			return fmt.Errorf("client %s: %w", id, ErrNotFound)
		}
		ov.Clients[id] = nil
		return nil
	})
	if err != nil {
		writeAdminErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// --- services ---

func (s *Server) listServicesAPI(w http.ResponseWriter, r *http.Request) {
	var out []ServiceConfig
	for _, svc := range s.store.services() {
		out = append(out, *svc)
	}
	writePage(w, r, out)
}

func (s *Server) getServiceAPI(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	svc := s.store.service(id)
	if svc == nil {
		writeAdminErr(w, fmt.Errorf("service %s: %w", id, ErrNotFound))
		return
	}
	writeJSON(w, http.StatusOK, svc)
}

func (s *Server) addServicesAPI(w http.ResponseWriter, r *http.Request) {
	var in []ServiceConfig
	if err := decodeOneOrMany(r, &in); err != nil {
		writeAdminErr(w, err)
		return
	}
	for i := range in {
		svc := in[i]
		svc.setDefaults()
		err := s.store.change(s.auditRecord(r, "addService", svc.ID, svc), func(ov *overlay, _ []ClientConfig, ss []ServiceConfig) error {
			if slices.ContainsFunc(ss, func(x ServiceConfig) bool { return x.ID == svc.ID }) {
				return fmt.Errorf("service %s: %w", svc.ID, ErrExists)
			}
			ov.Services[svc.ID] = &svc
			return nil
		})
		if err != nil {
			writeAdminErr(w, err)
			return
		}
		in[i] = svc
	}
	writeJSON(w, http.StatusCreated, in)
}

func (s *Server) putServiceAPI(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var svc ServiceConfig
	if err := decodeJSON(r, &svc); err != nil {
		writeAdminErr(w, err)
		return
	}
	if svc.ID == "" {
		svc.ID = id
	}
	if svc.ID != id {
		writeAdminErr(w, fmt.Errorf("%w: the body's id %s differs from the path's %s", errBadRequest, svc.ID, id))
		return
	}
	svc.setDefaults()
	err := s.store.change(s.auditRecord(r, "updateService", id, svc), func(ov *overlay, _ []ClientConfig, ss []ServiceConfig) error {
		if !slices.ContainsFunc(ss, func(x ServiceConfig) bool { return x.ID == id }) {
			return fmt.Errorf("service %s: %w", id, ErrNotFound)
		}
		ov.Services[id] = &svc
		return nil
	})
	if err != nil {
		writeAdminErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, svc)
}

func (s *Server) deleteServiceAPI(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	err := s.store.change(s.auditRecord(r, "removeService", id, nil), func(ov *overlay, _ []ClientConfig, ss []ServiceConfig) error {
		if !slices.ContainsFunc(ss, func(x ServiceConfig) bool { return x.ID == id }) {
			return fmt.Errorf("service %s: %w", id, ErrNotFound)
		}
		ov.Services[id] = nil
		return nil
	})
	if err != nil {
		writeAdminErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// --- grants ---

// grantsOf lists a service's grants as rules: each Allow entry is a rule
// without methods or paths.
func grantsOf(svc *ServiceConfig) []AccessRule {
	out := []AccessRule{}
	for _, a := range svc.Allow {
		out = append(out, AccessRule{Client: a})
	}
	return append(out, svc.Rules...)
}

func (s *Server) listGrantsAPI(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	svc := s.store.service(id)
	if svc == nil {
		writeAdminErr(w, fmt.Errorf("service %s: %w", id, ErrNotFound))
		return
	}
	writePage(w, r, grantsOf(svc))
}

// editService applies edit to the service id in effect and puts the result
// in the overlay.
func editService(ov *overlay, ss []ServiceConfig, id string, edit func(*ServiceConfig) error) error {
	i := slices.IndexFunc(ss, func(x ServiceConfig) bool { return x.ID == id })
	if i < 0 {
		return fmt.Errorf("service %s: %w", id, ErrNotFound)
	}
	svc := ss[i]
	if err := edit(&svc); err != nil {
		return err
	}
	ov.Services[id] = &svc
	return nil
}

func (s *Server) grantAPI(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	var rules []AccessRule
	if err := decodeOneOrMany(r, &rules); err != nil {
		writeAdminErr(w, err)
		return
	}
	for _, rule := range rules {
		if err := rule.validate(); err != nil {
			writeAdminErr(w, fmt.Errorf("%w: %v", ErrConfig, err))
			return
		}
	}
	err := s.store.change(s.auditRecord(r, "grantAccess", id, rules), func(ov *overlay, _ []ClientConfig, ss []ServiceConfig) error {
		return editService(ov, ss, id, func(svc *ServiceConfig) error {
			for _, rule := range rules {
				if len(rule.Methods) == 0 && len(rule.Paths) == 0 {
					if !slices.Contains(svc.Allow, rule.Client) {
						svc.Allow = append(svc.Allow, rule.Client)
					}
					continue
				}
				if !slices.ContainsFunc(svc.Rules, func(x AccessRule) bool { return sameRule(x, rule) }) {
					svc.Rules = append(svc.Rules, rule)
				}
			}
			return nil
		})
	})
	if err != nil {
		writeAdminErr(w, err)
		return
	}
	writeJSON(w, http.StatusCreated, grantsOf(s.store.service(id)))
}

func sameRule(a, b AccessRule) bool {
	return a.Client == b.Client && slices.Equal(a.Methods, b.Methods) && slices.Equal(a.Paths, b.Paths)
}

func (s *Server) revokeAPI(w http.ResponseWriter, r *http.Request) {
	id, client := r.PathValue("id"), r.PathValue("client")
	err := s.store.change(s.auditRecord(r, "revokeAccess", id, AccessRule{Client: client}), func(ov *overlay, _ []ClientConfig, ss []ServiceConfig) error {
		return editService(ov, ss, id, func(svc *ServiceConfig) error {
			n := len(svc.Allow) + len(svc.Rules)
			svc.Allow = slices.DeleteFunc(svc.Allow, func(a string) bool { return a == client })
			svc.Rules = slices.DeleteFunc(svc.Rules, func(x AccessRule) bool { return x.Client == client })
			if len(svc.Allow)+len(svc.Rules) == n {
				return fmt.Errorf("grant of %s on %s: %w", client, id, ErrNotFound)
			}
			return nil
		})
	})
	if err != nil {
		writeAdminErr(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// --- keys ---

// KeyStatus is the admin API's view of one of the server's certificates.
type KeyStatus struct {
	Usage            string    `json:"usage"` // auth, sign or internalTLS
	Subject          string    `json:"subject"`
	Issuer           string    `json:"issuer"`
	Serial           string    `json:"serial"`
	Fingerprint      string    `json:"fingerprint"` // hex SHA-256 of the DER
	NotBefore        time.Time `json:"notBefore"`
	NotAfter         time.Time `json:"notAfter"`
	ExpiresInSeconds int64     `json:"expiresInSeconds"`
	// OCSP is the status of the certificate's stapled OCSP response (auth
	// and sign only).
	OCSP *OCSPStatus `json:"ocsp,omitempty"`
}

// OCSPStatus is the state of a stapled OCSP response.
type OCSPStatus struct {
	Status     string    `json:"status"` // good, revoked, unknown, or none
	ProducedAt time.Time `json:"producedAt,omitzero"`
	NextUpdate time.Time `json:"nextUpdate,omitzero"`
	AgeSeconds int64     `json:"ageSeconds"` // -1: none
	Fresh      bool      `json:"fresh"`
	Problem    string    `json:"problem,omitempty"`
}

// KeyStatuses reports the server's certificates and their OCSP responses.
func (s *Server) KeyStatuses() []KeyStatus {
	now := time.Now()
	one := func(usage string, c *x509.Certificate) KeyStatus {
		return KeyStatus{Usage: usage, Subject: c.Subject.String(), Issuer: c.Issuer.String(), Serial: c.SerialNumber.Text(16),
			Fingerprint: pki.Fingerprint(c), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
			ExpiresInSeconds: int64(c.NotAfter.Sub(now).Seconds())}
	}
	var out []KeyStatus
	for _, k := range []struct {
		usage string
		kp    keyPair
		st    *ocsp.Stapler
	}{{"auth", s.auth, s.authStapler}, {"sign", s.sign, s.signStapler}} {
		ks := one(k.usage, k.kp.chain[0])
		o := &OCSPStatus{Status: "none", AgeSeconds: -1}
		if cur, err := k.st.Current(); err == nil && cur != nil {
			o.Status = cur.Status.String()
			o.ProducedAt, o.NextUpdate = cur.ProducedAt.UTC(), cur.NextUpdate.UTC()
			o.AgeSeconds = int64(k.st.Age().Seconds())
		}
		if _, err := k.st.Staple(); err != nil {
			o.Problem = err.Error()
		} else {
			o.Fresh = true
		}
		ks.OCSP = o
		out = append(out, ks)
	}
	if s.cfg.Keys.InternalTLSCert != "" {
		if certs, err := pki.LoadCertificates(s.cfg.path(s.cfg.Keys.InternalTLSCert)); err == nil && len(certs) > 0 {
			out = append(out, one("internalTLS", certs[0]))
		}
	}
	return out
}

func (s *Server) keysAPI(w http.ResponseWriter, r *http.Request) {
	writePage(w, r, s.KeyStatuses())
}

// --- audit ---

func (s *Server) changesAPI(w http.ResponseWriter, r *http.Request) {
	recs, err := s.store.auditRecords()
	if err != nil {
		writeAdminErr(w, err)
		return
	}
	if recs == nil {
		recs = []AuditRecord{}
	}
	writePage(w, r, recs)
}

func (s *Server) auditRecord(r *http.Request, action, target string, value any) AuditRecord {
	return AuditRecord{Time: time.Now().UTC(), Actor: adminActor, Remote: r.RemoteAddr, Action: action, Target: target, Value: value}
}

// --- helpers ---

var errBadRequest = errors.New("bad request")

// writeAdminErr maps an error to the admin API's status and error body;
// internal causes are not shown.
func writeAdminErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, ErrNotFound):
		writeAdminError(w, http.StatusNotFound, "not_found", err.Error())
	case errors.Is(err, ErrExists):
		writeAdminError(w, http.StatusConflict, "conflict", err.Error())
	case errors.Is(err, ErrConfig), errors.Is(err, errBadRequest):
		writeAdminError(w, http.StatusBadRequest, "invalid", err.Error())
	default:
		writeAdminError(w, http.StatusInternalServerError, "internal_error", "the change could not be made; see the server log")
	}
}

func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: the body is not the expected JSON: %v", errBadRequest, err)
	}
	return nil
}

// decodeOneOrMany reads a JSON object or an array of them into *[]T.
func decodeOneOrMany[T any](r *http.Request, out *[]T) error {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxAdminBody))
	if err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	data = bytes.TrimSpace(data)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if len(data) > 0 && data[0] == '[' {
		err = dec.Decode(out)
	} else {
		var one T
		if err = dec.Decode(&one); err == nil {
			*out = []T{one}
		}
	}
	if err != nil {
		return fmt.Errorf("%w: the body is not the expected JSON: %v", errBadRequest, err)
	}
	if len(*out) == 0 {
		return fmt.Errorf("%w: nothing to add", errBadRequest)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

// writePage writes one page of items as a JSON array, with the norms'
// pagination: page (from 1) and elementsParPage (default 30) in the query,
// Link first/prev/next/last and X-Total-Count in the answer.
func writePage[T any](w http.ResponseWriter, r *http.Request, items []T) {
	q := r.URL.Query()
	page, per := 1, DefaultElementsPerPage
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeAdminError(w, http.StatusBadRequest, "invalid", "page: want a positive integer")
			return
		}
		page = n
	}
	if v := q.Get("elementsParPage"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxElementsPerPage {
			writeAdminError(w, http.StatusBadRequest, "invalid", fmt.Sprintf("elementsParPage: want 1 to %d", maxElementsPerPage))
			return
		}
		per = n
	}
	total := len(items)
	last := max(1, (total+per-1)/per)
	lo := total // past the last page: empty (and no (page-1)*per overflow)
	if page <= last {
		lo = min(total, (page-1)*per)
	}
	hi := min(total, lo+per)
	link := func(p int, rel string) string {
		u := url.URL{Path: r.URL.Path}
		v := url.Values{}
		for k, vs := range q {
			v[k] = vs
		}
		v.Set("page", strconv.Itoa(p))
		v.Set("elementsParPage", strconv.Itoa(per))
		u.RawQuery = v.Encode()
		return fmt.Sprintf("<%s>; rel=%q", u.String(), rel)
	}
	links := []string{link(1, "first")}
	if page > 1 {
		links = append(links, link(min(page-1, last), "prev"))
	}
	if page < last {
		links = append(links, link(page+1, "next"))
	}
	links = append(links, link(last, "last"))
	for _, l := range links {
		w.Header().Add("Link", l)
	}
	w.Header().Set("X-Total-Count", strconv.Itoa(total))
	page1 := items[lo:hi]
	if page1 == nil {
		page1 = []T{}
	}
	writeJSON(w, http.StatusOK, page1)
}
