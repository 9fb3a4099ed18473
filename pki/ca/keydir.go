package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/passerelle/passerelle/pki"
)

// KeyDir is a member's keys directory (mode 0700), one set of files per
// usage U (auth, sign):
//
//	U.key         the private key, PEM, mode 0600; never overwritten
//	U.csr         the certificate signing request, PEM
//	U.enrollment  the id of the enrollment submitted for U.csr
//	U.pem         the certificate chain, PEM, leaf first, then the CA
type KeyDir string

// KeyPath is the private key of usage u.
func (d KeyDir) KeyPath(u pki.Usage) string { return filepath.Join(string(d), string(u)+".key") }

// CSRPath is the certificate signing request of usage u.
func (d KeyDir) CSRPath(u pki.Usage) string { return filepath.Join(string(d), string(u)+".csr") }

// CertPath is the certificate chain of usage u.
func (d KeyDir) CertPath(u pki.Usage) string { return filepath.Join(string(d), string(u)+".pem") }

// EnrollmentPath records the enrollment submitted for usage u's CSR.
func (d KeyDir) EnrollmentPath(u pki.Usage) string {
	return filepath.Join(string(d), string(u)+".enrollment")
}

// ErrPending reports an enrollment that is still waiting for the
// administrator.
var ErrPending = errors.New("ca: enrollment still pending")

// Generate makes a key for member and usage, and its CSR. It refuses to
// replace a key that is already there (ErrExists).
func (d KeyDir) Generate(member pki.ClientID, usage pki.Usage, alg pki.KeyAlgorithm) (csrPEM []byte, err error) {
	if _, err := pki.ParseUsage(string(usage)); err != nil {
		return nil, err
	}
	if member.IsSubsystem() {
		return nil, fmt.Errorf("%w: %s is a subsystem; keys belong to members (INSTANCE/CLASS/MEMBER)", pki.ErrBadIdentifier, member)
	}
	if _, err := pki.NewClientID(member.Parts()...); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	keyPath := d.KeyPath(usage)
	if _, err := os.Lstat(keyPath); err == nil {
		return nil, fmt.Errorf("%w: %s (refusing to overwrite a private key)", ErrExists, keyPath)
	}
	key, err := pki.GenerateKey(alg)
	if err != nil {
		return nil, err
	}
	csrPEM, err = pki.CreateCSR(key, member, usage)
	if err != nil {
		return nil, err
	}
	data, err := pki.MarshalPrivateKeyPEM(key)
	if err != nil {
		return nil, err
	}
	// O_EXCL: two concurrent runs cannot both write a key.
	f, err := os.OpenFile(keyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return nil, fmt.Errorf("%w: %s (refusing to overwrite a private key)", ErrExists, keyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(keyPath)
		return nil, fmt.Errorf("ca: write key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(keyPath)
		return nil, fmt.Errorf("ca: write key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("ca: write key: %w", err)
	}
	if err := pki.WriteFileAtomic(d.CSRPath(usage), csrPEM, 0o644); err != nil {
		return nil, fmt.Errorf("ca: write CSR: %w", err)
	}
	os.Remove(d.EnrollmentPath(usage)) // a stale enrollment of an older CSR
	return csrPEM, nil
}

// MemberOfCSR reads the member a CSR asks for (its member SAN URI).
func MemberOfCSR(csrPEM []byte) (pki.ClientID, error) {
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		return pki.ClientID{}, err
	}
	for _, u := range csr.URIs {
		if strings.HasPrefix(u.String(), pki.MemberURIPrefix) {
			return pki.ParseMemberURI(u)
		}
	}
	return pki.ClientID{}, ErrNoMemberInCSR
}

// Enroll submits usage's CSR to the CA (or, when an enrollment was already
// submitted for it, resumes it), waits up to wait for the administrator's
// decision (0: look once), and stores the issued chain as U.pem. member may
// be zero when the CSR names its member (keys generate writes it). It
// returns the chain; ErrPending when wait ran out, an error wrapping
// ErrRejected when the administrator refused.
func (d KeyDir) Enroll(ctx context.Context, client *Client, member pki.ClientID, usage pki.Usage, wait, poll time.Duration) ([]*x509.Certificate, string, error) {
	csrPEM, err := os.ReadFile(d.CSRPath(usage))
	if err != nil {
		return nil, "", fmt.Errorf("ca: %w (run keys generate first)", err)
	}
	if member.IsZero() {
		if member, err = MemberOfCSR(csrPEM); err != nil {
			return nil, "", fmt.Errorf("%w; give the member explicitly", err)
		}
	}
	key, err := pki.LoadPrivateKey(d.KeyPath(usage))
	if err != nil {
		return nil, "", err
	}
	id := ""
	if data, err := os.ReadFile(d.EnrollmentPath(usage)); err == nil {
		id = strings.TrimSpace(string(data))
		// A CA that no longer knows the enrollment (another CA, a new
		// database) gets the CSR again.
		var ae *APIError
		if _, err := client.Get(ctx, id); errors.As(err, &ae) && ae.StatusCode == http.StatusNotFound {
			id = ""
		}
	}
	if id == "" {
		if id, err = client.Submit(ctx, csrPEM, member, usage); err != nil {
			return nil, "", err
		}
		if err := pki.WriteFileAtomic(d.EnrollmentPath(usage), []byte(id+"\n"), 0o644); err != nil {
			return nil, id, fmt.Errorf("ca: record enrollment id %s: %w", id, err)
		}
	}
	var chain []*x509.Certificate
	if wait <= 0 {
		st, err := client.Get(ctx, id)
		if err != nil {
			return nil, id, err
		}
		switch st.State {
		case StatePending:
			return nil, id, fmt.Errorf("%w: %s", ErrPending, id)
		case StateRejected:
			return nil, id, fmt.Errorf("%w: %s", ErrRejected, st.Reason)
		}
		chain = st.Chain
	} else {
		wctx, cancel := context.WithTimeout(ctx, wait)
		chain, err = client.Wait(wctx, id, poll)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return nil, id, fmt.Errorf("%w: %s (not decided within %v; run enroll again to keep waiting)", ErrPending, id, wait)
		}
		if err != nil {
			return nil, id, err
		}
	}
	if !publicKeysEqual(key.Public(), chain[0].PublicKey) {
		return nil, id, fmt.Errorf("%w: the CA issued for another key than %s", ErrKeyMismatch, d.KeyPath(usage))
	}
	if err := pki.WriteFileAtomic(d.CertPath(usage), pki.EncodeCertificatesPEM(chain...), 0o644); err != nil {
		return nil, id, fmt.Errorf("ca: write certificate: %w", err)
	}
	return chain, id, nil
}

// Import stores a certificate chain issued elsewhere (PEM, leaf first) as
// U.pem for the usage whose key matches the leaf. A chain of several
// certificates must be one (each signed by the next).
func (d KeyDir) Import(certPEM []byte) (pki.Usage, error) {
	chain, err := pki.ParseCertificatesPEM(certPEM)
	if err != nil {
		return "", err
	}
	if err := checkChain(chain); err != nil {
		return "", err
	}
	for _, u := range pki.Usages {
		key, err := pki.LoadPrivateKey(d.KeyPath(u))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", err
		}
		if matches(key, chain[0]) {
			if err := pki.WriteFileAtomic(d.CertPath(u), pki.EncodeCertificatesPEM(chain...), 0o644); err != nil {
				return "", fmt.Errorf("ca: write certificate: %w", err)
			}
			return u, nil
		}
	}
	return "", fmt.Errorf("%w: no key in %s matches the certificate %q", ErrKeyMismatch, string(d), chain[0].Subject.CommonName)
}

func matches(key crypto.Signer, cert *x509.Certificate) bool {
	return publicKeysEqual(key.Public(), cert.PublicKey)
}
