package securityserver

import (
	"mime"
	"net/http"
	"strings"
)

// isSOAPRequest reports whether r is an X-Road SOAP request: a POST outside
// the REST paths with a SOAP 1.1, SOAP 1.2 or multipart content type.
func isSOAPRequest(r *http.Request) bool {
	if r.Method != http.MethodPost || strings.HasPrefix(r.URL.Path, "/r1/") || r.URL.Path == "/listClients" {
		return false
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return false
	}
	switch mt {
	case "text/xml", "application/soap+xml", "multipart/related":
		return true
	}
	return false
}

// serveSOAPConsumer carries an X-Road SOAP 4.0 request from a client system.
func (s *Server) serveSOAPConsumer(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "SOAP is not supported yet", http.StatusNotImplemented)
}

// serveSOAPProvider serves a signed SOAP request from another security server.
func (s *Server) serveSOAPProvider(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "SOAP is not supported yet", http.StatusNotImplemented)
}
