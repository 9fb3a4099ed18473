package timestamp

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"gopkg.in/yaml.v3"

	"github.com/passerelle/passerelle/pki"
)

// A TSA directory, made by InitDir and opened by OpenDir, holds:
const (
	ConfigFile = "tsa.yaml"    // policy OID and accuracy
	KeyFile    = "tsa-key.pem" // the TSA's private key, mode 0600
	CertFile   = "tsa.pem"     // the TSA certificate, then its issuers
	LedgerFile = "tokens.db"   // bbolt record of every issued token
)

// DirConfig is the YAML in ConfigFile.
type DirConfig struct {
	// Policy is the TSA policy OID, dotted (e.g. 2.25.…).
	Policy string `yaml:"policy"`
	// Accuracy is a Go duration (e.g. "1s", "500ms").
	Accuracy string `yaml:"accuracy"`
}

// InitConfig says how to make a TSA directory.
type InitConfig struct {
	Dir string
	// Policy OID; when nil a random OID under 2.25 (the UUID arc of ITU-T
	// X.667) is made: unique in practice, but not a registered OID, and not a
	// full 128-bit UUID arc (Go's asn1 reads arcs of at most 31 bits). A federation
	// with an assigned policy OID passes it.
	Policy asn1.ObjectIdentifier
	// Accuracy (DefaultAccuracy when zero).
	Accuracy time.Duration
	// Either KeyPEM and CertPEM (a key and certificate chain issued
	// elsewhere; the certificate must have the critical timeStamping EKU),
	// or Issue, which gets a CSR for a key made here and returns the chain
	// (TSA certificate first), e.g. from pki/ca.
	KeyPEM, CertPEM []byte
	Issue           func(ctx context.Context, csrPEM []byte) ([]*x509.Certificate, error)
	KeyAlgorithm    pki.KeyAlgorithm // for Issue; ECDSA P-256 when empty
}

// ErrDirExists: InitDir found a TSA directory already there.
var ErrDirExists = errors.New("timestamp: TSA directory already initialised")

// InitDir makes a TSA directory and returns the TSA certificate.
func InitDir(ctx context.Context, cfg InitConfig) (*x509.Certificate, error) {
	if cfg.Dir == "" {
		return nil, errors.New("timestamp: init: dir is required")
	}
	if (cfg.Issue == nil) == (cfg.CertPEM == nil) || (cfg.CertPEM == nil) != (cfg.KeyPEM == nil) {
		return nil, errors.New("timestamp: init: give either a certificate and key, or an issuer")
	}
	if _, err := os.Stat(filepath.Join(cfg.Dir, ConfigFile)); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrDirExists, cfg.Dir)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("timestamp: init: %w", err)
	}
	var key crypto.Signer
	var chain []*x509.Certificate
	var err error
	if cfg.Issue != nil {
		alg := cfg.KeyAlgorithm
		if alg == "" {
			alg = pki.ECDSAP256
		}
		if key, err = pki.GenerateKey(alg); err != nil {
			return nil, fmt.Errorf("timestamp: init: %w", err)
		}
		csr, err := pki.CreateCSR(key, pki.ClientID{}, pki.UsageTSA)
		if err != nil {
			return nil, fmt.Errorf("timestamp: init: %w", err)
		}
		if chain, err = cfg.Issue(ctx, csr); err != nil {
			return nil, fmt.Errorf("timestamp: init: issue TSA certificate: %w", err)
		}
	} else {
		if key, err = pki.ParsePrivateKeyPEM(cfg.KeyPEM); err != nil {
			return nil, fmt.Errorf("timestamp: init: key: %w", err)
		}
		if chain, err = pki.ParseCertificatesPEM(cfg.CertPEM); err != nil {
			return nil, fmt.Errorf("timestamp: init: certificate: %w", err)
		}
	}
	if len(chain) == 0 {
		return nil, errors.New("timestamp: init: no certificate")
	}
	if err := CheckTSACertificate(chain[0]); err != nil {
		return nil, fmt.Errorf("timestamp: init: %w", err)
	}
	if !publicKeysEqual(chain[0].PublicKey, key.Public()) {
		return nil, errors.New("timestamp: init: key does not match the certificate")
	}
	policy := cfg.Policy
	if policy == nil {
		policy = uuidOID(uuid.New())
	}
	acc := cfg.Accuracy
	if acc == 0 {
		acc = DefaultAccuracy
	}
	conf, err := yaml.Marshal(DirConfig{Policy: policy.String(), Accuracy: acc.String()})
	if err != nil {
		return nil, err
	}
	if err := pki.WritePrivateKey(filepath.Join(cfg.Dir, KeyFile), key); err != nil {
		return nil, fmt.Errorf("timestamp: init: %w", err)
	}
	if err := pki.WriteFileAtomic(filepath.Join(cfg.Dir, CertFile), pki.EncodeCertificatesPEM(chain...), 0o644); err != nil {
		return nil, fmt.Errorf("timestamp: init: %w", err)
	}
	header := []byte("# Passerelle TSA: policy is the TSA policy OID written in every token;\n# accuracy is the genTime accuracy claimed (Go duration).\n")
	if err := pki.WriteFileAtomic(filepath.Join(cfg.Dir, ConfigFile), append(header, conf...), 0o644); err != nil {
		return nil, fmt.Errorf("timestamp: init: %w", err)
	}
	return chain[0], nil
}

// uuidOID is 2.25.a.b with a and b 31 random bits of u each: Go's
// encoding/asn1 reads OID arcs of at most 31 bits, so the 128-bit UUID arc
// of X.667 does not fit.
func uuidOID(u uuid.UUID) asn1.ObjectIdentifier {
	a := int(binary.BigEndian.Uint32(u[0:4]) >> 1)
	b := int(binary.BigEndian.Uint32(u[4:8]) >> 1)
	return asn1.ObjectIdentifier{2, 25, a, b}
}

// ParseOID parses a dotted OID.
func ParseOID(s string) (asn1.ObjectIdentifier, error) {
	parts := strings.Split(s, ".")
	if len(parts) < 2 {
		return nil, fmt.Errorf("timestamp: bad OID %q", s)
	}
	oid := make(asn1.ObjectIdentifier, len(parts))
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 1<<31-1 || (len(p) > 1 && p[0] == '0') {
			return nil, fmt.Errorf("timestamp: bad OID %q", s)
		}
		oid[i] = n
	}
	if oid[0] > 2 || (oid[0] < 2 && oid[1] > 39) {
		return nil, fmt.Errorf("timestamp: bad OID %q", s)
	}
	return oid, nil
}

// LoadDirConfig reads and checks DIR's ConfigFile.
func LoadDirConfig(dir string) (policy asn1.ObjectIdentifier, accuracy time.Duration, err error) {
	data, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		return nil, 0, fmt.Errorf("timestamp: %w (run `passerelle tsa init --dir %s` first)", err, dir)
	}
	var c DirConfig
	if err := yaml.Unmarshal(data, &c); err != nil {
		return nil, 0, fmt.Errorf("timestamp: %s: %w", ConfigFile, err)
	}
	if policy, err = ParseOID(c.Policy); err != nil {
		return nil, 0, fmt.Errorf("timestamp: %s: field policy: %w", ConfigFile, err)
	}
	if c.Accuracy != "" {
		if accuracy, err = time.ParseDuration(c.Accuracy); err != nil || accuracy <= 0 {
			return nil, 0, fmt.Errorf("timestamp: %s: field accuracy: %q is not a positive duration", ConfigFile, c.Accuracy)
		}
	}
	return policy, accuracy, nil
}

// OpenDir opens a TSA directory: its config, key, certificate and ledger.
// Close the returned ledger when done; one process at a time may hold it.
func OpenDir(dir string, log *slog.Logger, reg prometheus.Registerer) (*Server, *BoltLedger, error) {
	policy, acc, err := LoadDirConfig(dir)
	if err != nil {
		return nil, nil, err
	}
	key, err := pki.LoadPrivateKey(filepath.Join(dir, KeyFile))
	if err != nil {
		return nil, nil, fmt.Errorf("timestamp: %w", err)
	}
	chain, err := pki.LoadCertificates(filepath.Join(dir, CertFile))
	if err != nil {
		return nil, nil, fmt.Errorf("timestamp: %w", err)
	}
	ledger, err := OpenLedger(filepath.Join(dir, LedgerFile))
	if err != nil {
		return nil, nil, err
	}
	srv, err := NewServer(ServerConfig{Signer: key, Chain: chain, Policy: policy, Accuracy: acc, Ledger: ledger, Log: log, Registerer: reg})
	if err != nil {
		ledger.Close()
		return nil, nil, err
	}
	return srv, ledger, nil
}
