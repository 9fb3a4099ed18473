package securityserver

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"
)

// openAPIMethods are the operations of an OpenAPI path item, in the order
// listMethods shows them.
var openAPIMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// maxOpenAPIBytes bounds an OpenAPI description.
const maxOpenAPIBytes = 8 << 20

// openAPIEndpoints reads the endpoints of an OpenAPI 3 description (YAML
// or JSON): each path's operations, with every templated segment ({id})
// replaced by "*", as X-Road's listMethods shows them.
func openAPIEndpoints(data []byte) ([]endpoint, error) {
	if len(data) > maxOpenAPIBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxOpenAPIBytes)
	}
	var doc struct {
		OpenAPI string                          `yaml:"openapi"`
		Paths   map[string]map[string]yaml.Node `yaml:"paths"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("not an OpenAPI description: %w", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		return nil, errors.New("not an OpenAPI 3 description (no openapi: 3.x)")
	}
	paths := make([]string, 0, len(doc.Paths))
	for p := range doc.Paths {
		if !strings.HasPrefix(p, "/") {
			return nil, fmt.Errorf("path %q does not start with /", p)
		}
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var out []endpoint
	for _, p := range paths {
		segs := strings.Split(p, "/")
		for i, s := range segs {
			if strings.Contains(s, "{") {
				segs[i] = anySegment
			}
		}
		pattern := strings.Join(segs, "/")
		for _, m := range openAPIMethods {
			if _, ok := doc.Paths[p][m]; ok {
				out = append(out, endpoint{Method: strings.ToUpper(m), Path: pattern})
			}
		}
	}
	return out, nil
}
