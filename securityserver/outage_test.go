package securityserver_test

import (
	"bufio"
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/pki/directory"
	"github.com/passerelle/passerelle/rest"
	"github.com/passerelle/passerelle/sandbox"
)

// metric reads one unlabelled (or fully labelled, as written) sample from
// an institution's server's /metrics; ok false when absent.
func metric(t testing.TB, in *sandbox.Institution, name string) (float64, bool) {
	t.Helper()
	resp, body := doHTTP(t, nil, "GET", "http://"+in.Addrs["admin"]+"/metrics", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s /metrics: %d", in.Member, resp.StatusCode)
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatalf("%s: %q: %v", name, line, err)
			}
			return v, true
		}
	}
	return 0, false
}

// waitDirectory waits until both servers use the directory of serial.
func waitDirectory(t testing.TB, sb *sandbox.Sandbox, serial uint64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for _, in := range []*sandbox.Institution{sb.Consumer, sb.Provider} {
		for {
			v, _ := metric(t, in, "passerelle_directory_serial")
			if uint64(v) == serial {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s still uses directory serial %v, want %d", in.Member, v, serial)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// signDirectory re-signs the sandbox's directory with edit and waits until
// both servers use it.
func signDirectory(t testing.TB, sb *sandbox.Sandbox, edit func(*directory.Draft) error) *directory.Document {
	t.Helper()
	doc, err := sb.SignDirectory(edit)
	if err != nil {
		t.Fatal(err)
	}
	waitDirectory(t, sb, doc.Serial)
	return doc
}

// exchangeOK makes one REST exchange and fails unless it succeeds; it
// returns its message id.
func exchangeOK(t testing.TB, sb *sandbox.Sandbox, what string) string {
	t.Helper()
	id := what + "-" + uuid.NewString()
	resp, body := callREST(t, sb, "POST", sandbox.RESTService, "/"+what, http.Header{rest.HeaderID: {id}, "Content-Type": {"text/plain"}}, []byte(id))
	if resp.StatusCode != http.StatusOK || string(body) != id {
		t.Fatalf("%s: %d %s %s", what, resp.StatusCode, resp.Header.Get(rest.HeaderError), body)
	}
	return id
}

// TestDirectoryExpiryAndRollback is row 5: a server whose copy of the
// directory has expired refuses traffic with OutdatedGlobalConf and resumes
// with a fresh one; an older serial is refused by the poller and traffic
// continues on the newer directory.
func TestDirectoryExpiryAndRollback(t *testing.T) {
	t.Parallel()
	var logs logBuffer
	sb := restSandboxLog(t, logs.Logger())
	exchangeOK(t, sb, "start")

	t.Run("expired", func(t *testing.T) {
		const validity = 3 * time.Second
		doc := signDirectory(t, sb, func(d *directory.Draft) error {
			d.Validity = directory.Duration(validity)
			return nil
		})
		exchangeOK(t, sb, "before-expiry")
		time.Sleep(time.Until(doc.ExpiresAt) + 100*time.Millisecond)
		resp, body := callREST(t, sb, "GET", sandbox.RESTService, "/expired", nil, nil)
		wantXRoadError(t, resp, body, http.StatusInternalServerError, "Server.ClientProxy.OutdatedGlobalConf")
		for _, in := range []*sandbox.Institution{sb.Consumer, sb.Provider} {
			if err := in.Server().Health(); err == nil {
				t.Errorf("%s Health() = nil with an expired directory", in.Member)
			}
		}
		// A new directory (default validity again) brings traffic back.
		signDirectory(t, sb, func(d *directory.Draft) error {
			d.Validity = directory.Duration(directory.DefaultValidity)
			return nil
		})
		exchangeOK(t, sb, "after-expiry")
	})

	t.Run("rollback refused", func(t *testing.T) {
		signed := filepath.Join(sb.DirectoryDir, directory.SignedFile)
		older, err := os.ReadFile(signed)
		if err != nil {
			t.Fatal(err)
		}
		newer := signDirectory(t, sb, nil)
		newerBytes, err := os.ReadFile(signed)
		if err != nil {
			t.Fatal(err)
		}
		errorsBefore, _ := metric(t, sb.Consumer, `passerelle_directory_refreshes_total{result="error"}`)
		// The directory service now serves the older, validly signed copy
		// (replaced atomically: a poller must never read half a file).
		if err := pki.WriteFileAtomic(signed, older, 0o644); err != nil {
			t.Fatal(err)
		}
		defer pki.WriteFileAtomic(signed, newerBytes, 0o644)
		deadline := time.Now().Add(30 * time.Second)
		for {
			n, _ := metric(t, sb.Consumer, `passerelle_directory_refreshes_total{result="error"}`)
			if n > errorsBefore && logs.Contains("rollback refused") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("after 30 s: refresh errors %v (were %v), a refused rollback logged: %v", n, errorsBefore, logs.Contains("rollback refused"))
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, in := range []*sandbox.Institution{sb.Consumer, sb.Provider} {
			if v, _ := metric(t, in, "passerelle_directory_serial"); uint64(v) != newer.Serial {
				t.Errorf("%s uses serial %v after a rollback, want %d", in.Member, v, newer.Serial)
			}
		}
		exchangeOK(t, sb, "after-rollback")
	})
}

// TestTSAOutage is row 6: with the TSA down past the failure period, new
// requests are refused with TimestamperFailed; once it is back, service
// resumes by itself and every message logged meanwhile gets its timestamp.
func TestTSAOutage(t *testing.T) {
	t.Parallel()
	sb := restSandbox(t)
	const failurePeriod = 2 * time.Second
	signDirectory(t, sb, func(d *directory.Draft) error {
		d.Params.TimestampFailurePeriodSeconds = int64(failurePeriod / time.Second)
		return nil
	})
	ids := []string{exchangeOK(t, sb, "tsa-up")}
	// Nothing pending when the outage starts, so that the failure period
	// counts from the first message logged during it.
	waitEvidence(t, sb, 30*time.Second, ids...)

	sb.TSA.Stop()
	outage := time.Now()
	// Accepted while the oldest unstamped message is younger than the
	// failure period, refused after.
	var refusedAt time.Time
	for refusedAt.IsZero() {
		if time.Since(outage) > 10*failurePeriod {
			t.Fatalf("still accepting %v after the TSA went down (failure period %v)", time.Since(outage), failurePeriod)
		}
		id := "tsa-down-" + uuid.NewString()
		resp, body := callREST(t, sb, "POST", sandbox.RESTService, "/down", http.Header{rest.HeaderID: {id}, "Content-Type": {"text/plain"}}, []byte(id))
		switch {
		case resp.StatusCode == http.StatusOK:
			ids = append(ids, id)
			time.Sleep(200 * time.Millisecond)
		default:
			wantXRoadError(t, resp, body, http.StatusInternalServerError, "Server.ClientProxy.LoggingFailed.TimestamperFailed")
			refusedAt = time.Now()
			if len(exchangeRecords(t, sb.Consumer, id)) != 0 {
				t.Errorf("a refused request was logged")
			}
		}
	}
	if d := refusedAt.Sub(outage); d < failurePeriod {
		t.Errorf("refused %v after the TSA went down, before the failure period %v", d, failurePeriod)
	}
	if len(ids) < 2 {
		t.Errorf("no exchange accepted during the failure period")
	}
	if err := sb.Consumer.Server().Health(); err == nil {
		t.Error("the consumer's Health() = nil past the failure period")
	}
	for _, id := range ids[1:] {
		for _, r := range exchangeRecords(t, sb.Consumer, id) {
			if r.Timestamped() {
				t.Errorf("record of %s timestamped while the TSA is down", id)
			}
		}
	}

	if err := sb.TSA.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, body := callREST(t, sb, "GET", sandbox.RESTService, "/back", nil, nil)
		if resp.StatusCode == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("service did not resume after the TSA came back: %d %s", resp.StatusCode, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ids = append(ids, exchangeOK(t, sb, "tsa-back"))
	// Nothing lost: every message logged before, during and after has its
	// timestamp (and receipt), verified.
	waitEvidence(t, sb, 30*time.Second, ids...)
}

// TestRegistryOutage is row 7: with the registry down exchanges go on;
// when it is back every message hash of those exchanges reaches it, and
// both servers' logs get their receipts.
func TestRegistryOutage(t *testing.T) {
	t.Parallel()
	sb := restSandbox(t)
	ids := []string{exchangeOK(t, sb, "registry-up")}
	sizeBefore := sb.Registry.Size()

	sb.RegistryGRPC.Stop()
	for i := range 5 {
		ids = append(ids, exchangeOK(t, sb, "registry-down-"+strconv.Itoa(i)))
	}
	time.Sleep(time.Second)
	for _, id := range ids[1:] {
		for _, in := range []*sandbox.Institution{sb.Consumer, sb.Provider} {
			for _, r := range exchangeRecords(t, in, id) {
				if r.Registered() {
					t.Errorf("%s record of %s has a receipt while the registry is down", in.Member, id)
				}
			}
		}
	}

	if err := sb.RegistryGRPC.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	ids = append(ids, exchangeOK(t, sb, "registry-back"))
	waitEvidence(t, sb, 20*time.Second, ids...)
	// 4 messages per exchange (request and response, each logged by both
	// servers) — plus the first exchange's if it was not registered yet.
	if grown := sb.Registry.Size() - sizeBefore; grown < int64(4*(len(ids)-1)) {
		t.Errorf("registry grew by %d entries, want at least %d", grown, 4*(len(ids)-1))
	}
}
