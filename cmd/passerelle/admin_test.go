package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/passerelle/passerelle/sandbox"
)

// runAdmin runs `passerelle admin` with args against the sandbox's provider
// server and returns what it printed.
func runAdmin(t *testing.T, sb *sandbox.Sandbox, args ...string) (string, error) {
	t.Helper()
	cmd := newAdminCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(append([]string{"--admin-url", "http://" + sb.Provider.Addrs["admin"], "--token-file", sb.Provider.AdminTokenFile()}, args...))
	err := cmd.ExecuteContext(t.Context())
	return out.String(), err
}

func TestAdminCLI(t *testing.T) {
	sb, err := sandbox.Start(t.Context(), sandbox.Config{Dir: filepath.Join(t.TempDir(), "sb")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sb.Close() })
	const svc = "SANDBOX/GOV/PROVIDER/services/cli"
	steps := []struct {
		name    string
		args    []string
		want    []string
		wantErr string
	}{
		{"services list", []string{"services", "list"}, []string{sandbox.RESTService, sandbox.SOAPService, "30s", "full"}, ""},
		{"services add", []string{"services", "add", svc, "--url", "http://127.0.0.1:9/api", "--timeout", "5s"}, []string{"added service " + svc}, ""},
		{"services add twice", []string{"services", "add", svc, "--url", "http://127.0.0.1:9/api"}, nil, "409"},
		{"services update", []string{"services", "update", svc, "--body-logging", "metadata"}, []string{"updated service " + svc}, ""},
		{"services show", []string{"services", "show", svc}, []string{`"bodyLogging": "metadata"`, `"timeout": "5s"`, `"url": "http://127.0.0.1:9/api"`}, ""},
		{"access grant", []string{"access", "grant", svc, sandbox.ClientID, "--method", "GET", "--path", "/pets/*"}, []string{"granted"}, ""},
		{"access list", []string{"access", "list", svc}, []string{sandbox.ClientID, "GET", "/pets/*"}, ""},
		{"access revoke", []string{"access", "revoke", svc, sandbox.ClientID}, []string{"revoked"}, ""},
		{"access revoke again", []string{"access", "revoke", svc, sandbox.ClientID}, nil, "404"},
		{"bad grant", []string{"access", "grant", svc, "SANDBOX/GOV"}, nil, "400"},
		{"clients add", []string{"clients", "add", "SANDBOX/GOV/PROVIDER/app", "--auth", "tls", "--cert-sha256", strings.Repeat("ab", 32)}, []string{"added client"}, ""},
		{"clients list", []string{"clients", "list"}, []string{"SANDBOX/GOV/PROVIDER/app", "tls", "SANDBOX/GOV/PROVIDER/services", "none"}, ""},
		{"clients foreign", []string{"clients", "add", "SANDBOX/GOV/OTHER/app"}, nil, "does not belong to owner"},
		{"clients remove", []string{"clients", "remove", "SANDBOX/GOV/PROVIDER/app"}, []string{"removed client"}, ""},
		{"services remove", []string{"services", "remove", svc}, []string{"removed service"}, ""},
		{"keys", []string{"keys"}, []string{"auth", "sign", "good"}, ""},
		{"changes", []string{"changes"}, []string{"addService", "updateService", "grantAccess", "revokeAccess", "addClient", "removeClient", "removeService", "admin"}, ""},
		{"changes json", []string{"changes", "--json"}, []string{`"actor": "admin"`, `"action": "addService"`}, ""},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			out, err := runAdmin(t, sb, st.args...)
			if st.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), st.wantErr) {
					t.Fatalf("admin %v = %v, want an error with %q\n%s", st.args, err, st.wantErr, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("admin %v: %v\n%s", st.args, err, out)
			}
			for _, w := range st.want {
				if !strings.Contains(out, w) {
					t.Errorf("admin %v printed\n%s\nwant %q in it", st.args, out, w)
				}
			}
		})
	}
	t.Run("no token file", func(t *testing.T) {
		cmd := newAdminCmd()
		cmd.SetArgs([]string{"services", "list"})
		cmd.SetOut(&bytes.Buffer{})
		if err := cmd.ExecuteContext(t.Context()); err == nil || !strings.Contains(err.Error(), "--token-file") {
			t.Errorf("without --token-file: %v", err)
		}
	})
}
