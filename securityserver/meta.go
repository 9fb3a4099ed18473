package securityserver

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/directory"
	"github.com/passerelle/passerelle/rest"
)

type listClientsMember struct {
	ID   clientIDJSON `json:"id" xml:"id"`
	Name string       `json:"name" xml:"name"`
}

type clientIDJSON struct {
	Instance   string `json:"xroad_instance" xml:"xRoadInstance"`
	Class      string `json:"member_class" xml:"memberClass"`
	Code       string `json:"member_code" xml:"memberCode"`
	Subsystem  string `json:"subsystem_code,omitempty" xml:"subsystemCode,omitempty"`
	ObjectType string `json:"object_type" xml:"objectType,attr"`
}

// writeListClients answers listClients as X-Road does: JSON with Accept:
// application/json, XML otherwise, listing every member and subsystem of the
// instance (the directory's own when xRoadInstance is not given).
func writeListClients(w http.ResponseWriter, r *http.Request, doc *directory.Document, instance string) {
	var out []listClientsMember
	if instance == "" || instance == doc.Instance {
		for _, m := range doc.Members {
			id, err := pki.ParseMemberID(m.ID) // validated with the directory
			if err != nil {
				continue
			}
			out = append(out, listClientsMember{ID: clientIDJSON{id.Instance, id.Class, id.Member, "", "MEMBER"}, Name: m.Name})
			for _, sub := range m.Subsystems {
				out = append(out, listClientsMember{ID: clientIDJSON{id.Instance, id.Class, id.Member, sub, "SUBSYSTEM"}, Name: m.Name})
			}
		}
	}
	if rest.PrefersXML(r.Header.Get("Accept")) || r.Header.Get("Accept") == "" {
		w.Header().Set("Content-Type", "text/xml; charset=utf-8")
		type clientList struct {
			XMLName xml.Name            `xml:"http://x-road.eu/xsd/xroad.xsd clientList"`
			Members []listClientsMember `xml:"member"`
		}
		fmt.Fprint(w, xml.Header)
		xml.NewEncoder(w).Encode(clientList{Members: out})
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(map[string]any{"member": out})
}

// REST metaservices on the provider side (X-Road service metadata protocol
// for REST): listMethods, allowedMethods and getOpenAPI travel between
// security servers like any request — signed, verified, logged, with a
// signed response — and the provider's security server answers them itself
// instead of calling a backend: providerMetaService stands in for the
// service (access checks), metaResponse for the backend.

// metaTimeout bounds a metaservice answer.
const metaTimeout = 30 * time.Second

// providerMetaService checks a metaservice request and returns the service
// that stands for it: every client may ask about a subsystem of this server
// that offers services; getOpenAPI needs a service with an OpenAPI
// description that the client may call. Errors are *rest.Error.
func (s *Server) providerMetaService(req *rest.Request) (*ServiceConfig, error) {
	sub := req.Service.Client
	snap := s.store.load()
	known := false
	for _, id := range snap.serviceIDs {
		if sameSubsystem(id, sub.String()) {
			known = true
			break
		}
	}
	if sub.MemberID() != s.owner || !known {
		return nil, rest.ServerProxyError(rest.CodeUnknownService, fmt.Sprintf("this security server offers no services of %s", sub), nil)
	}
	if req.Kind == rest.KindGetOpenAPI {
		id := sub.String() + "/" + req.MetaServiceParam
		e := snap.services[id]
		if e == nil {
			return nil, rest.ServerProxyError(rest.CodeUnknownService, fmt.Sprintf("unknown service %s", id), nil)
		}
		if !allowed(e.cfg, req.Client) {
			return nil, rest.ServerProxyError(rest.CodeAccessDenied, fmt.Sprintf("client %s may not call %s", req.Client, id), nil)
		}
		if e.openAPI == nil {
			return nil, rest.ServerProxyError(rest.CodeUnknownService, fmt.Sprintf("service %s has no OpenAPI description", id), nil)
		}
	}
	return &ServiceConfig{ID: req.Service.String(), Timeout: Duration(metaTimeout), BodyLogging: BodyLoggingFull,
		Allow: []string{req.Client.String()}}, nil
}

// metaService is one entry of listMethods and allowedMethods.
type metaService struct {
	ObjectType   string     `json:"object_type"`
	Instance     string     `json:"xroad_instance"`
	Class        string     `json:"member_class"`
	Code         string     `json:"member_code"`
	Subsystem    string     `json:"subsystem_code"`
	ServiceCode  string     `json:"service_code"`
	ServiceType  string     `json:"service_type"`
	EndpointList []endpoint `json:"endpoint_list"`
}

// metaResponse answers a metaservice request that providerMetaService
// admitted, as a backend would: listMethods and allowedMethods in X-Road's
// JSON (annex B of the REST metadata protocol), getOpenAPI with the
// service's OpenAPI file as configured.
func (s *Server) metaResponse(req *rest.Request) (*http.Response, error) {
	snap := s.store.load()
	h := http.Header{}
	var body []byte
	switch req.Kind {
	case rest.KindListMethods, rest.KindAllowedMethods:
		c := req.Service.Client
		list := []metaService{}
		for _, id := range snap.serviceIDs {
			e := snap.services[id]
			if !sameSubsystem(id, c.String()) || strings.Contains(id[len(c.String())+1:], "/") {
				continue
			}
			eps := e.endpoints
			if req.Kind == rest.KindAllowedMethods {
				if eps = allowedEndpoints(e.cfg, e.endpoints, req.Client); len(eps) == 0 {
					continue
				}
			}
			list = append(list, metaService{"SERVICE", c.Instance, c.Class, c.Member, c.Subsystem,
				id[len(c.String())+1:], e.kind, eps})
		}
		var err error
		if body, err = json.Marshal(map[string]any{"service": list}); err != nil {
			return nil, err
		}
		h.Set("Content-Type", "application/json; charset=utf-8")
	case rest.KindGetOpenAPI:
		e := snap.services[req.Service.Client.String()+"/"+req.MetaServiceParam]
		if e == nil || e.openAPI == nil {
			return nil, fmt.Errorf("service %s/%s has no OpenAPI description", req.Service.Client, req.MetaServiceParam)
		}
		body = e.openAPI
		ct := "application/yaml; charset=utf-8"
		if t := bytes.TrimSpace(body); len(t) > 0 && t[0] == '{' {
			ct = "application/json; charset=utf-8"
		}
		h.Set("Content-Type", ct)
	default:
		return nil, fmt.Errorf("metaservice %s is not available", req.Kind)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	return &http.Response{StatusCode: http.StatusOK, Status: "200 OK", Header: h, ContentLength: int64(len(body)),
		Body: io.NopCloser(bytes.NewReader(body)), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1}, nil
}

func sameSubsystem(serviceID, subsystem string) bool {
	return len(serviceID) > len(subsystem) && serviceID[:len(subsystem)] == subsystem && serviceID[len(subsystem)] == '/'
}
