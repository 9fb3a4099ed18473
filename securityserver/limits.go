package securityserver

import (
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/passerelle/passerelle/rest"
)

// Limits that protect the server, each refused with a clear error in the
// REST error format (a SOAP fault for SOAP): the body size (413,
// RequestTooLarge, in consumer.go and provider.go), the backend timeout (504,
// ServiceFailed.Timeout), the requests one client may have in flight (429,
// TooManyRequests, here) and the request header size (431, here).

// Rate-limit headers on a 429, as the interoperability norms ask: the
// limit, what remains, and when to retry (seconds).
const (
	HeaderRateLimitLimit     = "RateLimit-Limit"
	HeaderRateLimitRemaining = "RateLimit-Remaining"
	HeaderRateLimitReset     = "RateLimit-Reset"
)

// clientLimiter counts each client's requests in flight. Safe for
// concurrent use.
type clientLimiter struct {
	max int // <= 0: unlimited
	mu  sync.Mutex
	n   map[string]int
}

func newClientLimiter(max int) *clientLimiter {
	return &clientLimiter{max: max, n: map[string]int{}}
}

// acquire admits one more request of client, or refuses it with a
// TooManyRequests error (429) after setting the rate-limit headers on w.
// The caller must call release once the request is done.
func (l *clientLimiter) acquire(w http.ResponseWriter, client string, origin rest.Origin) (release func(), err error) {
	if l == nil || l.max <= 0 {
		return func() {}, nil
	}
	l.mu.Lock()
	n := l.n[client]
	if n >= l.max {
		l.mu.Unlock()
		h := w.Header()
		h.Set(HeaderRateLimitLimit, strconv.Itoa(l.max))
		h.Set(HeaderRateLimitRemaining, "0")
		h.Set(HeaderRateLimitReset, "1")
		h.Set("Retry-After", "1")
		return nil, rest.NewError(origin, rest.CodeTooManyRequests,
			fmt.Sprintf("client %s already has %d requests in flight, the most this security server accepts", client, l.max), nil)
	}
	l.n[client] = n + 1
	l.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			l.mu.Lock()
			if l.n[client] <= 1 {
				delete(l.n, client)
			} else {
				l.n[client]--
			}
			l.mu.Unlock()
		})
	}, nil
}

// inFlight is the number of requests in flight over all clients.
func (l *clientLimiter) inFlight() int {
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	t := 0
	for _, n := range l.n {
		t += n
	}
	return t
}

// hardHeaderLimit is http.Server's MaxHeaderBytes: above the configured
// limit, so that limitHeaders answers with the error format; only headers
// beyond it get Go's own plain-text 431.
func (s *Server) hardHeaderLimit() int {
	n := s.cfg.Limits.MaxHeaderBytes
	if n <= 0 {
		n = DefaultMaxHeaderBytes
	}
	return 2*n + 4096
}

// headerBytes is the size of r's request line and header block as sent
// (give or take whitespace).
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	if r.Host != "" {
		n += len("Host: \r\n") + len(r.Host)
	}
	return n
}

// limitHeaders refuses a request whose header block exceeds
// limits.maxHeaderBytes with 431 in the REST error format (or a SOAP fault
// for a SOAP request), before h sees it.
func (s *Server) limitHeaders(h http.Handler, origin rest.Origin) http.Handler {
	max := s.cfg.Limits.MaxHeaderBytes
	if max <= 0 {
		max = DefaultMaxHeaderBytes
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := headerBytes(r); n > max {
			log := s.log.With("side", sideOf(origin), "messageId", r.Header.Get(rest.HeaderID))
			msg := fmt.Sprintf("the request's headers are %d bytes, more than the %d this security server accepts", n, max)
			if isSOAPRequest(r) {
				s.faultSOAP(w, r, log, faultVersion(r.Header.Get("Content-Type")), string(origin),
					soapError(string(codeHeaderTooLarge), nil, "%s", msg))
				return
			}
			e := rest.NewError(origin, codeHeaderTooLarge, msg, nil)
			e.Status = http.StatusRequestHeaderFieldsTooLarge
			s.writeError(w, r, log, e, origin)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// codeHeaderTooLarge is Passerelle's code for oversized headers (X-Road has
// none).
const codeHeaderTooLarge rest.Code = "RequestHeaderTooLarge"

func sideOf(origin rest.Origin) string {
	if origin == rest.OriginServerProxy {
		return "provider"
	}
	return "consumer"
}
