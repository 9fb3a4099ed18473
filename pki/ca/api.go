package ca

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/passerelle/passerelle/pki"
)

// API paths.
const (
	EnrollmentsPath = "/api/v1/enrollments"
	OpenAPIPath     = "/api/v1/openapi.json"
)

// MaxRequestBody bounds an enrollment request (a CSR is at most 64 KiB).
const MaxRequestBody = 128 << 10

// APIConfig configures NewAPI.
type APIConfig struct {
	CA         *CA
	Log        *slog.Logger          // nil = discard
	Registerer prometheus.Registerer // nil = no metrics
}

// SubmitRequest is the body of POST /api/v1/enrollments.
type SubmitRequest struct {
	CSR    string    `json:"csr"`    // PEM
	Member string    `json:"member"` // INSTANCE/CLASS/MEMBER
	Usage  pki.Usage `json:"usage"`  // auth or sign
}

// EnrollmentResponse is the body of POST (202) and GET
// /api/v1/enrollments/{id}.
type EnrollmentResponse struct {
	ID               string          `json:"id"`
	Member           string          `json:"member"`
	Usage            pki.Usage       `json:"usage"`
	State            EnrollmentState `json:"state"` // pending, issued, rejected
	SubmittedAt      time.Time       `json:"submittedAt"`
	DecidedAt        *time.Time      `json:"decidedAt,omitempty"`
	Reason           string          `json:"reason,omitempty"`           // when rejected
	Serial           string          `json:"serial,omitempty"`           // when issued
	CertificateChain string          `json:"certificateChain,omitempty"` // PEM, leaf first, when issued
}

// ErrorResponse is every error body of the API: X-Road's type, message and
// detail (a UUID also logged with the cause), and the interoperability
// norms' code and error.
type ErrorResponse struct {
	Type    string `json:"type"`
	Message string `json:"message"`
	Detail  string `json:"detail"`
	Code    string `json:"code"`
	Error   string `json:"error"`
}

type api struct {
	ca       *CA
	log      *slog.Logger
	requests *prometheus.CounterVec
}

// NewAPI returns the enrollment API handler: POST /api/v1/enrollments (a
// CSR, member and usage; 202 with the enrollment), GET
// /api/v1/enrollments/{id} (pending, rejected with the reason, or issued with
// the PEM certificate chain) and GET /api/v1/openapi.json. Mount it at
// /api/v1/. Deciding on enrollments is not part of the API: administrators
// do it with the ca commands on the CA directory.
func NewAPI(cfg APIConfig) (http.Handler, error) {
	if cfg.CA == nil {
		return nil, errors.New("ca: NewAPI needs a CA")
	}
	a := &api{ca: cfg.CA, log: cfg.Log}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "passerelle_ca_enrollment_requests_total",
		Help: "Enrollment API requests by operation and HTTP status code.",
	}, []string{"op", "code"})
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(a.requests); err != nil {
			return nil, fmt.Errorf("ca: register metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc(EnrollmentsPath, a.enrollments)
	mux.HandleFunc(EnrollmentsPath+"/{id}", a.enrollment)
	mux.HandleFunc(OpenAPIPath, a.openAPI)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.fail(w, r, "unknown", &apiError{status: http.StatusNotFound, code: "not_found", msg: "no such resource"})
	})
	return mux, nil
}

// apiError is an error with its HTTP rendering.
type apiError struct {
	status int
	code   string // machine code, snake_case
	msg    string // safe public message
	cause  error  // logged, not sent
}

func (e *apiError) Error() string { return e.msg }

// classify maps an error to its public form. Refusals of the request carry
// our own messages, which say what was wrong with the input; anything else
// is logged and answered with a generic message.
func classify(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	client := func(status int, code string) *apiError {
		return &apiError{status: status, code: code, msg: err.Error(), cause: err}
	}
	switch {
	case errors.Is(err, pki.ErrBadCSR), errors.Is(err, pki.ErrWeakKey):
		return client(http.StatusBadRequest, "invalid_csr")
	case errors.Is(err, ErrMemberMismatch):
		return client(http.StatusBadRequest, "member_mismatch")
	case errors.Is(err, pki.ErrBadIdentifier):
		return client(http.StatusBadRequest, "invalid_member")
	case errors.Is(err, pki.ErrUnknownUsage), errors.Is(err, ErrNotEnrollable):
		return client(http.StatusBadRequest, "invalid_usage")
	case errors.Is(err, ErrNotFound):
		return &apiError{status: http.StatusNotFound, code: "not_found", msg: "no such enrollment", cause: err}
	case errors.Is(err, ErrTooManyPending):
		return &apiError{status: http.StatusTooManyRequests, code: "too_many_pending", msg: "too many enrollments are waiting for a decision; try again later", cause: err}
	case errors.Is(err, ErrBusy):
		return &apiError{status: http.StatusServiceUnavailable, code: "busy", msg: "the certificate database is busy; try again", cause: err}
	}
	return &apiError{status: http.StatusInternalServerError, code: "internal_error", msg: "internal error", cause: err}
}

var errorTypes = map[int]string{
	http.StatusBadRequest:            "Client.BadRequest",
	http.StatusNotFound:              "Client.NotFound",
	http.StatusMethodNotAllowed:      "Client.MethodNotAllowed",
	http.StatusRequestEntityTooLarge: "Client.RequestTooLarge",
	http.StatusUnsupportedMediaType:  "Client.UnsupportedMediaType",
	http.StatusTooManyRequests:       "Client.TooManyRequests",
	http.StatusServiceUnavailable:    "Server.Unavailable",
}

// fail is the one place where the API's errors reach the wire.
func (a *api) fail(w http.ResponseWriter, r *http.Request, op string, err error) {
	ae := classify(err)
	detail := uuid.NewString()
	typ, ok := errorTypes[ae.status]
	if !ok {
		typ = "Server.InternalError"
	}
	level := slog.LevelInfo
	if ae.status >= 500 {
		level = slog.LevelError
	}
	a.log.Log(r.Context(), level, "enrollment API error", "op", op, "status", ae.status, "code", ae.code,
		"detail", detail, "remote", r.RemoteAddr, "err", ae.cause)
	if ae.status == http.StatusServiceUnavailable || ae.status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", "1")
	}
	a.write(w, op, ae.status, ErrorResponse{Type: typ, Message: ae.msg, Detail: detail, Code: ae.code, Error: http.StatusText(ae.status)})
}

func (a *api) write(w http.ResponseWriter, op string, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
	a.requests.WithLabelValues(op, strconv.Itoa(status)).Inc()
}

func methodNotAllowed(allow string) *apiError {
	return &apiError{status: http.StatusMethodNotAllowed, code: "method_not_allowed", msg: "method not allowed; use " + allow}
}

func (a *api) enrollments(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		a.fail(w, r, "submit", methodNotAllowed(http.MethodPost))
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		a.fail(w, r, "submit", &apiError{status: http.StatusUnsupportedMediaType, code: "unsupported_media_type", msg: "send application/json"})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequestBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			a.fail(w, r, "submit", &apiError{status: http.StatusRequestEntityTooLarge, code: "request_too_large", msg: fmt.Sprintf("request body larger than %d bytes", MaxRequestBody)})
			return
		}
		a.fail(w, r, "submit", &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: "cannot read request body", cause: err})
		return
	}
	req, err := decodeSubmit(body)
	if err != nil {
		a.fail(w, r, "submit", err)
		return
	}
	member, err := pki.ParseMemberID(req.Member)
	if err != nil {
		a.fail(w, r, "submit", err)
		return
	}
	id, err := a.ca.SubmitEnrollment(r.Context(), []byte(req.CSR), member, req.Usage, r.RemoteAddr)
	if err != nil {
		a.fail(w, r, "submit", err)
		return
	}
	e, err := a.ca.Enrollment(r.Context(), id)
	if err != nil {
		a.fail(w, r, "submit", err)
		return
	}
	a.log.Info("enrollment submitted", "enrollment", id, "member", e.Member, "usage", e.Usage, "remote", r.RemoteAddr)
	w.Header().Set("Location", EnrollmentsPath+"/"+id)
	a.write(w, "submit", http.StatusAccepted, responseFor(e))
}

func decodeSubmit(body []byte) (*SubmitRequest, error) {
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	var req SubmitRequest
	bad := func(msg string) error {
		return &apiError{status: http.StatusBadRequest, code: "invalid_request", msg: msg}
	}
	if err := dec.Decode(&req); err != nil {
		return nil, bad("request body is not the expected JSON object {csr, member, usage}: " + truncate(err.Error()))
	}
	if dec.More() {
		return nil, bad("trailing data after the JSON object")
	}
	switch {
	case req.CSR == "":
		return nil, bad("csr is required (PEM)")
	case req.Member == "":
		return nil, bad("member is required (INSTANCE/CLASS/MEMBER)")
	case req.Usage == "":
		return nil, bad("usage is required (auth or sign)")
	}
	return &req, nil
}

func (a *api) enrollment(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		a.fail(w, r, "get", methodNotAllowed(http.MethodGet))
		return
	}
	id := r.PathValue("id")
	if _, err := uuid.Parse(id); err != nil {
		a.fail(w, r, "get", &apiError{status: http.StatusNotFound, code: "not_found", msg: "no such enrollment"})
		return
	}
	e, err := a.ca.Enrollment(r.Context(), id)
	if err != nil {
		a.fail(w, r, "get", err)
		return
	}
	a.write(w, "get", http.StatusOK, responseFor(e))
}

func responseFor(e *Enrollment) EnrollmentResponse {
	resp := EnrollmentResponse{
		ID: e.ID, Member: e.Member, Usage: e.Usage, State: e.State,
		SubmittedAt: e.SubmittedAt, Reason: e.Reason, Serial: e.Serial,
	}
	if !e.DecidedAt.IsZero() {
		t := e.DecidedAt
		resp.DecidedAt = &t
	}
	if len(e.Chain) > 0 {
		resp.CertificateChain = string(pki.EncodeCertificatesPEM(e.Chain...))
	}
	return resp
}

func (a *api) openAPI(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		a.fail(w, r, "openapi", methodNotAllowed(http.MethodGet))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write([]byte(openAPIDoc))
	a.requests.WithLabelValues("openapi", "200").Inc()
}

const openAPIDoc = `{
  "openapi": "3.0.3",
  "info": {"title": "Passerelle CA enrollment API", "version": "1"},
  "paths": {
    "/api/v1/enrollments": {
      "post": {
        "summary": "Submit a CSR for a member's auth or sign certificate; an administrator approves or rejects it.",
        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SubmitRequest"}}}},
        "responses": {
          "202": {"description": "Accepted, pending", "headers": {"Location": {"schema": {"type": "string"}}},
                  "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Enrollment"}}}},
          "400": {"$ref": "#/components/responses/Error"}, "413": {"$ref": "#/components/responses/Error"},
          "415": {"$ref": "#/components/responses/Error"}, "429": {"$ref": "#/components/responses/Error"},
          "503": {"$ref": "#/components/responses/Error"}
        }
      }
    },
    "/api/v1/enrollments/{id}": {
      "get": {
        "summary": "An enrollment: pending, rejected (with the reason) or issued (with the PEM certificate chain).",
        "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "format": "uuid"}}],
        "responses": {
          "200": {"description": "The enrollment", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Enrollment"}}}},
          "404": {"$ref": "#/components/responses/Error"}
        }
      }
    }
  },
  "components": {
    "schemas": {
      "SubmitRequest": {"type": "object", "required": ["csr", "member", "usage"], "additionalProperties": false, "properties": {
        "csr": {"type": "string", "description": "PEM certificate signing request"},
        "member": {"type": "string", "example": "EE/GOV/70000001"},
        "usage": {"type": "string", "enum": ["auth", "sign"]}}},
      "Enrollment": {"type": "object", "properties": {
        "id": {"type": "string", "format": "uuid"}, "member": {"type": "string"}, "usage": {"type": "string"},
        "state": {"type": "string", "enum": ["pending", "issued", "rejected"]},
        "submittedAt": {"type": "string", "format": "date-time"}, "decidedAt": {"type": "string", "format": "date-time"},
        "reason": {"type": "string"}, "serial": {"type": "string", "description": "lower-case hex"},
        "certificateChain": {"type": "string", "description": "PEM, leaf first, then the CA"}}},
      "Error": {"type": "object", "properties": {
        "type": {"type": "string"}, "message": {"type": "string"}, "detail": {"type": "string", "format": "uuid"},
        "code": {"type": "string"}, "error": {"type": "string"}}}
    },
    "responses": {"Error": {"description": "Error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}}
  }
}
`
