package securityserver

import (
	"encoding/json"
	"encoding/xml"
	"fmt"
	"log/slog"
	"net/http"

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
			id, err := parseMemberLoose(m.ID)
			if err != nil {
				continue
			}
			out = append(out, listClientsMember{ID: clientIDJSON{id[0], id[1], id[2], "", "MEMBER"}, Name: m.Name})
			for _, sub := range m.Subsystems {
				out = append(out, listClientsMember{ID: clientIDJSON{id[0], id[1], id[2], sub, "SUBSYSTEM"}, Name: m.Name})
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

func parseMemberLoose(s string) ([3]string, error) {
	var p [3]string
	n := 0
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '/' {
			if n == 3 {
				return p, fmt.Errorf("bad member %q", s)
			}
			p[n] = s[start:i]
			n++
			start = i + 1
		}
	}
	if n != 3 {
		return p, fmt.Errorf("bad member %q", s)
	}
	return p, nil
}

// serveProviderMeta answers the REST metaservices addressed to one of this
// server's subsystems: listMethods, allowedMethods and getOpenAPI.
func (s *Server) serveProviderMeta(w http.ResponseWriter, r *http.Request, log *slog.Logger, req *rest.Request) {
	type endpoint struct {
		Method string `json:"method"`
		Path   string `json:"path"`
	}
	type service struct {
		ObjectType   string     `json:"object_type"`
		Instance     string     `json:"xroad_instance"`
		Class        string     `json:"member_class"`
		Code         string     `json:"member_code"`
		Subsystem    string     `json:"subsystem_code"`
		ServiceCode  string     `json:"service_code"`
		ServiceType  string     `json:"service_type"`
		EndpointList []endpoint `json:"endpoint_list"`
	}
	switch req.Kind {
	case rest.KindListMethods, rest.KindAllowedMethods:
		list := []service{}
		for _, sc := range s.cfg.Services {
			svc := s.services[sc.ID]
			if svc == nil || !sameSubsystem(sc.ID, req.Service.Client.String()) {
				continue
			}
			if req.Kind == rest.KindAllowedMethods && !allowed(svc, req.Client) {
				continue
			}
			c := req.Service.Client
			code := sc.ID[len(c.String())+1:]
			list = append(list, service{"SERVICE", c.Instance, c.Class, c.Member, c.Subsystem, code, "REST",
				[]endpoint{{Method: "*", Path: "**"}}})
		}
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		json.NewEncoder(w).Encode(map[string]any{"service": list})
	default:
		s.writeError(w, r, log, rest.ServerProxyError(rest.CodeUnknownService,
			fmt.Sprintf("metaservice %s is not available", req.Kind), nil), rest.OriginServerProxy)
	}
}

func sameSubsystem(serviceID, subsystem string) bool {
	return len(serviceID) > len(subsystem) && serviceID[:len(subsystem)] == subsystem && serviceID[len(subsystem)] == '/'
}
