package main

import (
	"strings"
	"testing"
)

// An update without --auth must be refused, not read as --auth none (which
// would switch the client's authentication off).
func TestAdminClientsUpdateRequiresAuth(t *testing.T) {
	root := newRootCmd()
	root.SetArgs([]string{"admin", "--admin-url", "http://127.0.0.1:1", "--token-file", "/nonexistent",
		"clients", "update", "EE/GOV/1/client", "--cert-sha256", strings.Repeat("ab", 32)})
	root.SetOut(new(strings.Builder))
	root.SetErr(new(strings.Builder))
	err := root.Execute()
	if err == nil || !strings.Contains(err.Error(), `"auth"`) {
		t.Fatalf("clients update without --auth: error = %v, want a required-flag error naming auth", err)
	}
}
