package securityserver

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExampleConfigLoads(t *testing.T) {
	c, err := LoadConfig("../deploy/config/security-server.yaml")
	if err != nil {
		t.Fatalf("LoadConfig(example) = %v", err)
	}
	if c.Services[0].Timeout.String() != "30s" || c.Limits.MaxBodyBytes != 10<<20 || c.Limits.MaxHeaderBytes != 64<<10 ||
		c.Limits.MaxConcurrentPerClient != 100 || c.Clients[0].Auth.Mode != AuthNone || c.Clients[2].Auth.JWT.Claim != DefaultJWTClaim {
		t.Errorf("defaults not as documented: %+v", c)
	}
}

func TestConfigRefusals(t *testing.T) {
	base, err := os.ReadFile("../deploy/config/security-server.yaml")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, from, to, field string
	}{
		{"bad owner", "owner: EE/GOV/70000001", "owner: EE/GOV", "owner"},
		{"unknown field", "serverCode: ss1", "serverCode: ss1\nservercode: x", "servercode"},
		{"foreign client", "- id: EE/GOV/70000001/client", "- id: EE/GOV/999/client", "clients[0].id"},
		{"foreign service", "- id: EE/GOV/70000001/services/hello", "- id: EE/GOV/1/services/hello", "services[0].id"},
		{"bad body logging", "bodyLogging: full", "bodyLogging: some", "services[0].bodyLogging"},
		{"bad grant", "- EE/COM/12345678", "- EE/COM", "services[0].allow[1]"},
		{"two directory sources", "  # file: /etc/passerelle/directory.jws", "  file: /x", "directory"},
		{"bad duration", "timeout: 30s", "timeout: soon", "line"},
		{"bad auth mode", "mode: tls", "mode: kerberos", "clients[1].auth.mode"},
		{"tls without pins", "      certSHA256:\n        - 3b:8f", "      certSHA256: []\n      # - 3b:8f", "clients[1].auth: mode tls needs"},
		{"bad fingerprint", "        - 3b:8f:44", "        - zz:8f:44", "clients[1].auth.certSHA256[0]"},
		{"jwt without issuer", "        issuer: https://idp.example.gov/realms/gov", "", "clients[2].auth.jwt.issuer"},
		{"jwt and token file", "      # tokenFile: /etc", "      tokenFile: /etc", "clients[2].auth"},
		{"bad rule method", "methods: [GET]", "methods: [FETCH]", "services[0].rules[0]"},
		{"bad rule path", `paths: ["/pets/*", "/store/**"]`, `paths: ["pets"]`, "services[0].rules[0]"},
		{"client cert without key", "      clientKey: /etc/passerelle/backends/ss-client.key", "", "services[1].tls"},
		{"bad backend url", "url: https://records.internal:8443/v1", "url: records", "services[1].url"},
		{"consumerTLS without key", "  internalTLSKey: /etc/passerelle/keys/internal.key", "", "listen.consumerTLS"},
		{"header limit", "maxHeaderBytes: 65536", "maxHeaderBytes: 99999999", "limits.maxHeaderBytes"},
		{"concurrency limit", "maxConcurrentPerClient: 100", "maxConcurrentPerClient: -5", "limits.maxConcurrentPerClient"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			if !strings.Contains(string(base), tt.from) {
				t.Fatalf("example lacks %q", tt.from)
			}
			os.WriteFile(p, []byte(strings.Replace(string(base), tt.from, tt.to, 1)), 0o600)
			_, err := LoadConfig(p)
			if err == nil || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("LoadConfig = %v, want an error naming %q", err, tt.field)
			}
			if tt.name != "unknown field" && tt.name != "bad duration" && !errors.Is(err, ErrConfig) {
				t.Errorf("error %v is not ErrConfig", err)
			}
		})
	}
}
