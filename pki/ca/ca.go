// Package ca is Passerelle's certificate authority: a root CA made with
// cfssl's initca, issuance with cfssl's local signer and one profile per
// pki.Usage, a bbolt certificate database (issued certificates by serial,
// revocations, enrollments and an append-only audit log of who did what,
// when), the member enrollment workflow and its HTTP API.
//
// Entry points:
//   - Init makes a CA directory; Open opens one.
//   - (*CA).Sign issues a certificate for a CSR, a member and a usage.
//   - (*CA).Revoke, (*CA).List, (*CA).Status; (*CA).OCSPStatus is the status
//     source of the OCSP responder (pki/ocsp).
//   - (*CA).SubmitEnrollment, Pending, Approve, Reject, Enrollment: the
//     enrollment workflow; NewAPI serves it over HTTP and Client calls it.
//   - KeyDir is a member's keys directory: Generate, Enroll, Import.
//
// A CA directory holds ca.pem (the root certificate), ca-key.pem (its key,
// mode 0600) and ca.db (the bbolt database). The database is opened only for
// the duration of each transaction, waiting up to a lock timeout for another
// process's transaction: a running `ca serve` and the administrator's
// commands (approve, revoke, …) therefore work on the same directory at once.
package ca

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	cflog "github.com/cloudflare/cfssl/log"

	"github.com/passerelle/passerelle/pki"
)

// Files of a CA directory.
const (
	CertFile = "ca.pem"
	KeyFile  = "ca-key.pem"
	DBFile   = "ca.db"
)

// Validity defaults.
const (
	RootValidity    = 10 * 365 * 24 * time.Hour
	DefaultValidity = 365 * 24 * time.Hour
)

// Errors callers branch on. Refusals of a signing request also wrap the pki
// sentinel that says why: pki.ErrBadCSR (garbage, truncated, bad
// self-signature), pki.ErrWeakKey (RSA < 2048), pki.ErrUnknownUsage,
// pki.ErrBadIdentifier (malformed member).
var (
	ErrExists          = errors.New("ca: already exists")
	ErrNotFound        = errors.New("ca: not found")
	ErrAlreadyRevoked  = errors.New("ca: certificate already revoked")
	ErrNotPending      = errors.New("ca: enrollment already decided")
	ErrMemberMismatch  = errors.New("ca: CSR names a different member")
	ErrBadRequest      = errors.New("ca: bad signing request")
	ErrNotEnrollable   = errors.New("ca: usage cannot be enrolled for")
	ErrTooManyPending  = errors.New("ca: too many pending enrollments")
	ErrKeyMismatch     = errors.New("ca: certificate does not match the key")
	ErrBadReason       = errors.New("ca: unknown revocation reason")
	ErrNoMemberInCSR   = errors.New("ca: CSR names no member")
	ErrRejected        = errors.New("ca: enrollment rejected")
	ErrValidityTooLong = errors.New("ca: validity ends after the CA certificate")
)

func init() {
	// cfssl logs every issuance at Info level to stderr in its own format;
	// our daemons log JSON, and every cfssl error reaches us as a value.
	cflog.Level = cflog.LevelFatal
}

// CA is an open certificate authority. It is safe for concurrent use, and
// other processes may use the same directory at the same time.
type CA struct {
	dir   string
	cert  *x509.Certificate
	key   crypto.Signer
	store *store
	now   func() time.Time
	// MaxPending bounds pending enrollments (default 1000).
	maxPending int
	signMu     sync.Mutex
}

// InitConfig says what root CA Init makes.
type InitConfig struct {
	Dir      string           // created if missing (0700); must not hold a CA
	Instance string           // the federation instance, an identifier part
	Name     string           // the CA's common name; default "Passerelle INSTANCE Root CA"
	Key      pki.KeyAlgorithm // default ECDSA P-256
	OCSPURL  string           // written into issued certificates (AIA); may be set later
	Operator string           // recorded in the audit log
}

// Init makes a root CA with cfssl's initca in cfg.Dir: DIR/ca.pem, its key
// DIR/ca-key.pem (0600) and the certificate database DIR/ca.db. It refuses a
// directory that already holds any of them.
func Init(ctx context.Context, cfg InitConfig) (*CA, error) {
	if cfg.Dir == "" {
		return nil, fmt.Errorf("%w: no CA directory", ErrBadRequest)
	}
	if !pki.ValidPart(cfg.Instance) {
		return nil, fmt.Errorf("%w: instance %q must be 1-255 characters from A-Z a-z 0-9 '()+,-.=?", pki.ErrBadIdentifier, cfg.Instance)
	}
	alg, err := pki.ParseKeyAlgorithm(string(cfg.Key))
	if err != nil {
		return nil, err
	}
	if cfg.OCSPURL != "" {
		if err := checkOCSPURL(cfg.OCSPURL); err != nil {
			return nil, err
		}
	}
	if cfg.Name == "" {
		cfg.Name = "Passerelle " + cfg.Instance + " Root CA"
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	for _, f := range []string{CertFile, KeyFile, DBFile} {
		if _, err := os.Lstat(filepath.Join(cfg.Dir, f)); err == nil {
			return nil, fmt.Errorf("%w: %s (refusing to overwrite a CA)", ErrExists, filepath.Join(cfg.Dir, f))
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	certPEM, keyPEM, err := newRoot(cfg.Name, cfg.Instance, alg)
	if err != nil {
		return nil, err
	}
	// The key first: a directory with ca.pem but no key is useless, one with
	// a key and no certificate can be inspected.
	if err := pki.WriteFileAtomic(filepath.Join(cfg.Dir, KeyFile), keyPEM, 0o600); err != nil {
		return nil, fmt.Errorf("ca: write key: %w", err)
	}
	if err := pki.WriteFileAtomic(filepath.Join(cfg.Dir, CertFile), certPEM, 0o644); err != nil {
		return nil, fmt.Errorf("ca: write certificate: %w", err)
	}
	if err := createStore(filepath.Join(cfg.Dir, DBFile)); err != nil {
		return nil, err
	}
	c, err := Open(cfg.Dir)
	if err != nil {
		return nil, err
	}
	err = c.store.update(ctx, func(t *tx) error {
		if err := t.put(bucketMeta, metaKey, Settings{Instance: cfg.Instance, OCSPURL: cfg.OCSPURL}); err != nil {
			return err
		}
		return t.audit(AuditRecord{
			Actor:  actor(cfg.Operator),
			Action: ActionInit,
			Serial: serialHex(c.cert.SerialNumber),
			Detail: fmt.Sprintf("root %q, key %s, valid until %s", cfg.Name, alg, c.cert.NotAfter.UTC().Format(time.RFC3339)),
		})
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Open opens the CA in dir. It checks that the key (which must not be
// readable by group or others) matches ca.pem.
func Open(dir string) (*CA, error) {
	certs, err := pki.LoadCertificates(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	cert := certs[0]
	if !cert.IsCA {
		return nil, fmt.Errorf("ca: %s is not a CA certificate", filepath.Join(dir, CertFile))
	}
	key, err := pki.LoadPrivateKey(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("%w: %s and %s", ErrKeyMismatch, KeyFile, CertFile)
	}
	dbPath := filepath.Join(dir, DBFile)
	if _, err := os.Stat(dbPath); err != nil {
		return nil, fmt.Errorf("ca: certificate database: %w", err)
	}
	return &CA{
		dir:        dir,
		cert:       cert,
		key:        key,
		store:      &store{path: dbPath, timeout: DefaultLockTimeout},
		now:        time.Now,
		maxPending: 1000,
	}, nil
}

// Close releases the CA. The database is not held open between
// transactions, so Close only forgets the key.
func (c *CA) Close() error {
	c.key = nil
	return nil
}

// Certificate returns the root certificate.
func (c *CA) Certificate() *x509.Certificate { return c.cert }

// Signer returns the CA's private key, for the OCSP responder.
func (c *CA) Signer() crypto.Signer { return c.key }

// Dir returns the CA directory.
func (c *CA) Dir() string { return c.dir }

// SetLockTimeout changes how long a transaction waits for another process's
// lock on the database (default DefaultLockTimeout).
func (c *CA) SetLockTimeout(d time.Duration) { c.store.timeout = d }

// LogValue names the CA without its key.
func (c *CA) LogValue() slog.Value {
	return slog.GroupValue(slog.String("dir", c.dir), slog.String("subject", c.cert.Subject.CommonName))
}

// Settings are the CA's stored settings.
type Settings struct {
	Instance string `json:"instance"`
	OCSPURL  string `json:"ocspUrl,omitempty"` // AIA OCSP URL of issued certificates
}

const metaKey = "settings"

// Settings returns the stored settings.
func (c *CA) Settings(ctx context.Context) (Settings, error) {
	var s Settings
	err := c.store.view(ctx, func(t *tx) error {
		_, err := t.get(bucketMeta, metaKey, &s)
		return err
	})
	return s, err
}

// SetOCSPURL sets the OCSP URL written into certificates issued from now on
// ("" for none), and records the change.
func (c *CA) SetOCSPURL(ctx context.Context, ocspURL, operator string) error {
	if ocspURL != "" {
		if err := checkOCSPURL(ocspURL); err != nil {
			return err
		}
	}
	return c.store.update(ctx, func(t *tx) error {
		var s Settings
		if _, err := t.get(bucketMeta, metaKey, &s); err != nil {
			return err
		}
		if s.OCSPURL == ocspURL {
			return nil
		}
		s.OCSPURL = ocspURL
		if err := t.put(bucketMeta, metaKey, s); err != nil {
			return err
		}
		return t.audit(AuditRecord{Actor: actor(operator), Action: ActionSettings, Detail: "ocspUrl=" + strconv.Quote(ocspURL)})
	})
}

func checkOCSPURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: OCSP URL %q must be an absolute http(s) URL", ErrBadRequest, s)
	}
	return nil
}

func actor(s string) string {
	if s == "" {
		return "unspecified"
	}
	return s
}
