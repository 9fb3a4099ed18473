package directory_test

import (
	"fmt"
	"strings"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/directory"
)

// A consumer-side server resolves a service's subsystem to the provider's
// security servers; a provider checks its TLS peer against the directory.
func ExampleDocument_ServersFor() {
	fp := strings.Repeat("ab", 32) // pki.Fingerprint of the server's TLS certificate
	d, err := directory.ParseDocument([]byte(`{
	  "version": 1, "instance": "PAS", "serial": 7,
	  "issuedAt": "2026-01-01T00:00:00Z", "expiresAt": "2026-01-02T00:00:00Z",
	  "members": [{"id": "PAS/GOV/1001", "name": "Ministry", "subsystems": ["registry"]}],
	  "securityServers": [{"owner": "PAS/GOV/1001", "code": "ss1", "address": "ss1.example:5500",
	    "tlsCertSha256": "` + fp + `", "subsystems": ["PAS/GOV/1001/registry"]}],
	  "certificateAuthorities": [], "timestampingAuthorities": [], "registries": [],
	  "parameters": {"replayWindowSeconds": 120}
	}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	sub, _ := pki.ParseSubsystemID("PAS/GOV/1001/registry")
	for _, s := range d.ServersFor(sub) {
		fmt.Println(s.ID(), s.Address)
	}
	fmt.Println(d.ServesClient(sub, fp), d.Params.ReplayWindow(), d.Params.OCSPFreshness())
	// Output:
	// PAS/GOV/1001/ss1 ss1.example:5500
	// true 2m0s 1h0m0s
}
