package ca

import (
	"context"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/passerelle/passerelle/pki"
)

// Record is an issued certificate as the database holds it.
type Record struct {
	Serial     string    `json:"serial"` // lower-case hex
	Member     string    `json:"member,omitempty"`
	Usage      pki.Usage `json:"usage"`
	Subject    string    `json:"subject"`
	NotBefore  time.Time `json:"notBefore"`
	NotAfter   time.Time `json:"notAfter"`
	IssuedAt   time.Time `json:"issuedAt"`
	IssuedBy   string    `json:"issuedBy"`
	Enrollment string    `json:"enrollment,omitempty"` // the enrollment it answered, if any
	Revoked    bool      `json:"revoked,omitempty"`
	RevokedAt  time.Time `json:"revokedAt,omitzero"`
	RevokedBy  string    `json:"revokedBy,omitempty"`
	Reason     Reason    `json:"reason,omitempty"`
	DER        []byte    `json:"der"`
}

// Certificate parses the stored certificate.
func (r *Record) Certificate() (*x509.Certificate, error) {
	return x509.ParseCertificate(r.DER)
}

// State is "revoked", "expired" or "good" at time now.
func (r *Record) State(now time.Time) string {
	switch {
	case r.Revoked:
		return "revoked"
	case now.After(r.NotAfter):
		return "expired"
	}
	return "good"
}

// Audit actions.
const (
	ActionInit     = "init"
	ActionSettings = "settings"
	ActionIssue    = "issue"
	ActionRevoke   = "revoke"
	ActionSubmit   = "enrollment.submit"
	ActionApprove  = "enrollment.approve"
	ActionReject   = "enrollment.reject"
)

// AuditRecord is one entry of the append-only audit log: who did what, when.
type AuditRecord struct {
	Seq        uint64    `json:"seq"`
	Time       time.Time `json:"time"`
	Actor      string    `json:"actor"`
	Action     string    `json:"action"`
	Serial     string    `json:"serial,omitempty"`
	Enrollment string    `json:"enrollment,omitempty"`
	Member     string    `json:"member,omitempty"`
	Usage      pki.Usage `json:"usage,omitempty"`
	Detail     string    `json:"detail,omitempty"`
}

// Audit returns the audit log, oldest first.
func (c *CA) Audit(ctx context.Context) ([]AuditRecord, error) {
	var out []AuditRecord
	err := c.store.view(ctx, func(t *tx) error {
		return t.each(bucketAudit, func(k, v []byte) error {
			var r AuditRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("ca: corrupt audit record %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, r)
			return nil
		})
	})
	return out, err
}

// List returns every issued certificate, oldest issuance first.
func (c *CA) List(ctx context.Context) ([]Record, error) {
	var out []Record
	err := c.store.view(ctx, func(t *tx) error {
		return t.each(bucketCerts, func(k, v []byte) error {
			var r Record
			if err := json.Unmarshal(v, &r); err != nil {
				return fmt.Errorf("ca: corrupt certificate record %s: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	slices.SortStableFunc(out, func(a, b Record) int { return a.IssuedAt.Compare(b.IssuedAt) })
	return out, err
}

// Lookup returns the record of the certificate with serial, or ErrNotFound.
func (c *CA) Lookup(ctx context.Context, serial *big.Int) (*Record, error) {
	var r Record
	err := c.store.view(ctx, func(t *tx) error {
		ok, err := t.get(bucketCerts, serialHex(serial), &r)
		if err == nil && !ok {
			err = fmt.Errorf("%w: certificate with serial %s", ErrNotFound, serialHex(serial))
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &r, nil
}

// Reason is an RFC 5280 CRLReason code.
type Reason int

// RFC 5280 §5.3.1 reason codes (7 is unused; removeFromCRL is for delta CRLs
// only and not accepted).
const (
	ReasonUnspecified          Reason = 0
	ReasonKeyCompromise        Reason = 1
	ReasonCACompromise         Reason = 2
	ReasonAffiliationChanged   Reason = 3
	ReasonSuperseded           Reason = 4
	ReasonCessationOfOperation Reason = 5
	ReasonCertificateHold      Reason = 6
	ReasonPrivilegeWithdrawn   Reason = 9
	ReasonAACompromise         Reason = 10
)

var reasonNames = map[Reason]string{
	ReasonUnspecified:          "unspecified",
	ReasonKeyCompromise:        "keyCompromise",
	ReasonCACompromise:         "cACompromise",
	ReasonAffiliationChanged:   "affiliationChanged",
	ReasonSuperseded:           "superseded",
	ReasonCessationOfOperation: "cessationOfOperation",
	ReasonCertificateHold:      "certificateHold",
	ReasonPrivilegeWithdrawn:   "privilegeWithdrawn",
	ReasonAACompromise:         "aACompromise",
}

func (r Reason) String() string {
	if s, ok := reasonNames[r]; ok {
		return s
	}
	return "reason(" + strconv.Itoa(int(r)) + ")"
}

// ParseReason reads a reason by its RFC 5280 name (case, '-' and '_'
// ignored: key-compromise, keyCompromise, KEY_COMPROMISE) or its number.
func ParseReason(s string) (Reason, error) {
	if s == "" {
		return ReasonUnspecified, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if _, ok := reasonNames[Reason(n)]; ok {
			return Reason(n), nil
		}
	}
	norm := strings.ToLower(strings.NewReplacer("-", "", "_", "").Replace(s))
	for r, name := range reasonNames {
		if strings.ToLower(name) == norm {
			return r, nil
		}
	}
	return 0, fmt.Errorf("%w %q (want one of unspecified, keyCompromise, cACompromise, affiliationChanged, superseded, cessationOfOperation, certificateHold, privilegeWithdrawn, aACompromise)", ErrBadReason, s)
}

// Revoke marks the certificate with serial revoked for reason, recording
// operator. Revoking twice is an error (ErrAlreadyRevoked); an unknown serial
// is ErrNotFound.
func (c *CA) Revoke(ctx context.Context, serial *big.Int, reason Reason, operator string) error {
	if _, ok := reasonNames[reason]; !ok {
		return fmt.Errorf("%w: %d", ErrBadReason, int(reason))
	}
	return c.store.update(ctx, func(t *tx) error {
		var r Record
		key := serialHex(serial)
		ok, err := t.get(bucketCerts, key, &r)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: certificate with serial %s", ErrNotFound, key)
		}
		if r.Revoked {
			return fmt.Errorf("%w: serial %s on %s (%s)", ErrAlreadyRevoked, key, r.RevokedAt.Format(time.RFC3339), r.Reason)
		}
		r.Revoked = true
		r.RevokedAt = c.now().UTC().Truncate(time.Second)
		r.RevokedBy = actor(operator)
		r.Reason = reason
		if err := t.put(bucketCerts, key, r); err != nil {
			return err
		}
		return t.audit(AuditRecord{
			Time: r.RevokedAt, Actor: r.RevokedBy, Action: ActionRevoke,
			Serial: key, Member: r.Member, Usage: r.Usage, Detail: "reason " + reason.String(),
		})
	})
}
