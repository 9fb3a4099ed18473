package securityserver_test

import (
	"os"
	"os/exec"
	"testing"
)

// xmlsec1 returns the path of xmlsec1, skipping the test when it is missing
// (failing under CI=true, where every tool must be present).
func xmlsec1(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("xmlsec1")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("xmlsec1 not found (CI=true requires it; run make deps): %v", err)
		}
		t.Skipf("xmlsec1 not found; run make deps: %v", err)
	}
	return p
}

func runCmd(t *testing.T, bin string, args ...string) ([]byte, error) {
	t.Helper()
	return exec.CommandContext(t.Context(), bin, args...).CombinedOutput()
}
