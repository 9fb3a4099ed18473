package securityserver

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/passerelle/passerelle/pki"
)

// Access rights on the provider side. A service admits a client (the
// request's X-Road-Client, a subsystem or a member) when one of its grants
// names the client or the client's member: an entry of Allow (any method, any
// path) or an AccessRule whose methods and paths match the request. Anything
// else is denied (Server.ServerProxy.AccessDenied, 403).

// anyMethod and the path wildcards of AccessRule and endpoints.
const (
	anyMethod    = "*"
	anySegment   = "*"
	anyRemainder = "**"
)

// validate checks a rule without side effects.
func (r *AccessRule) validate() error {
	if _, err := pki.ParseClientID(r.Client); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	for _, m := range r.Methods {
		if m != anyMethod && !validMethod(m) {
			return fmt.Errorf("methods: %q is not an HTTP method", m)
		}
	}
	for _, p := range r.Paths {
		if err := validPathPattern(p); err != nil {
			return fmt.Errorf("paths: %w", err)
		}
	}
	return nil
}

func validMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodTrace, http.MethodConnect:
		return true
	}
	return false
}

var errPathPattern = errors.New("a path starts with / and may use * for one segment and a final ** for any rest")

func validPathPattern(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q: %w", p, errPathPattern)
	}
	segs := strings.Split(p[1:], "/")
	for i, s := range segs {
		if s == anyRemainder && i != len(segs)-1 {
			return fmt.Errorf("%q: %w", p, errPathPattern)
		}
	}
	return nil
}

// grantsClient reports whether a grant for grantee covers client: the same
// subsystem, or the client's member.
func grantsClient(grantee string, client pki.ClientID) bool {
	return grantee == client.String() || grantee == client.MemberID().String()
}

// allowed reports whether client may call svc at all: some grant names it
// (for SOAP, whose operations are not paths, and for getWsdl/getOpenAPI).
func allowed(svc *ServiceConfig, client pki.ClientID) bool {
	if svc == nil {
		return false
	}
	for _, a := range svc.Allow {
		if grantsClient(a, client) {
			return true
		}
	}
	for _, r := range svc.Rules {
		if grantsClient(r.Client, client) {
			return true
		}
	}
	return false
}

// permits reports whether client may call method on the resource path
// (escaped, as received; "" is the service's root) of svc.
func permits(svc *ServiceConfig, client pki.ClientID, method, path string) bool {
	if svc == nil {
		return false
	}
	for _, a := range svc.Allow {
		if grantsClient(a, client) {
			return true
		}
	}
	for _, r := range svc.Rules {
		if grantsClient(r.Client, client) && r.matches(method, path) {
			return true
		}
	}
	return false
}

func (r *AccessRule) matches(method, path string) bool {
	ok := len(r.Methods) == 0
	for _, m := range r.Methods {
		if m == anyMethod || m == method {
			ok = true
			break
		}
	}
	if !ok {
		return false
	}
	if len(r.Paths) == 0 {
		return true
	}
	for _, p := range r.Paths {
		if matchPath(p, path) {
			return true
		}
	}
	return false
}

// matchPath matches an escaped resource path against a pattern: segments
// compare exactly, "*" matches one segment, a final "**" any rest (even
// none). "" and "/" are the service's root.
func matchPath(pattern, path string) bool {
	if path == "" {
		path = "/"
	}
	ps := strings.Split(strings.TrimPrefix(pattern, "/"), "/")
	xs := strings.Split(strings.TrimPrefix(path, "/"), "/")
	for i, p := range ps {
		if p == anyRemainder && i == len(ps)-1 {
			return true
		}
		if i >= len(xs) {
			return false
		}
		if p != anySegment && p != xs[i] {
			return false
		}
	}
	return len(ps) == len(xs)
}

// endpoint is a method and a path pattern, as listMethods shows them.
type endpoint struct {
	Method string `json:"method"`
	Path   string `json:"path"`
}

// allowedEndpoints lists the endpoints of svc that client may call: every
// endpoint when a grant admits all, else the endpoints that some rule
// admits (or the rules themselves when the service lists no endpoints).
func allowedEndpoints(svc *ServiceConfig, all []endpoint, client pki.ClientID) []endpoint {
	for _, a := range svc.Allow {
		if grantsClient(a, client) {
			return all
		}
	}
	var out []endpoint
	seen := map[endpoint]bool{}
	add := func(e endpoint) {
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	for _, r := range svc.Rules {
		if !grantsClient(r.Client, client) {
			continue
		}
		if len(all) == 1 && all[0] == (endpoint{anyMethod, "/" + anyRemainder}) {
			methods, paths := r.Methods, r.Paths
			if len(methods) == 0 {
				methods = []string{anyMethod}
			}
			if len(paths) == 0 {
				paths = []string{"/" + anyRemainder}
			}
			for _, m := range methods {
				for _, p := range paths {
					add(endpoint{m, p})
				}
			}
			continue
		}
		for _, e := range all {
			if r.coversEndpoint(e) {
				add(e)
			}
		}
	}
	return out
}

// coversEndpoint reports whether r admits every request to endpoint e.
func (r *AccessRule) coversEndpoint(e endpoint) bool {
	okM := len(r.Methods) == 0
	for _, m := range r.Methods {
		if m == anyMethod || m == e.Method {
			okM = true
		}
	}
	if !okM {
		return false
	}
	if len(r.Paths) == 0 {
		return true
	}
	for _, p := range r.Paths {
		if p == e.Path || matchPath(p, e.Path) {
			return true
		}
	}
	return false
}

// orRoot shows a resource path for messages: "/" for the service's root.
func orRoot(path string) string {
	if path == "" {
		return "/"
	}
	return path
}
