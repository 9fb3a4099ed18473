package ca

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/passerelle/passerelle/pki"
)

// EnrollmentState is where an enrollment stands.
type EnrollmentState string

const (
	StatePending  EnrollmentState = "pending"
	StateIssued   EnrollmentState = "issued"
	StateRejected EnrollmentState = "rejected"
)

// Enrollment is a member's request for a certificate, waiting for an
// administrator's decision.
type Enrollment struct {
	ID          string          `json:"id"`
	Member      string          `json:"member"`
	Usage       pki.Usage       `json:"usage"`
	State       EnrollmentState `json:"state"`
	CSR         string          `json:"csr"` // PEM
	SubmittedAt time.Time       `json:"submittedAt"`
	SubmittedBy string          `json:"submittedBy"` // e.g. the client's address
	DecidedAt   time.Time       `json:"decidedAt,omitzero"`
	DecidedBy   string          `json:"decidedBy,omitempty"`
	Reason      string          `json:"reason,omitempty"` // why it was rejected
	Serial      string          `json:"serial,omitempty"` // the issued certificate

	// Chain is the issued certificate and the CA certificate, filled in by
	// (*CA).Enrollment once the state is StateIssued.
	Chain []*x509.Certificate `json:"-"`
}

// EnrollableUsages are the usages a member may ask for through enrollment;
// the CA's own service certificates (tsa, ocsp, registry, directory) are
// issued with Sign by the administrator.
var EnrollableUsages = []pki.Usage{pki.UsageAuth, pki.UsageSign}

// maxReason bounds a rejection reason.
const maxReason = 1024

// SubmitEnrollment records a member's CSR for an administrator to approve or
// reject, and returns its id (a random UUID, which is also what lets the
// member fetch the result). The CSR, member and usage get the same checks as
// Sign, now, so that a bad request is refused at once. from says who
// submitted it (the client's address) for the audit log.
func (c *CA) SubmitEnrollment(ctx context.Context, csrPEM []byte, member pki.ClientID, usage pki.Usage, from string) (string, error) {
	if !slices.Contains(EnrollableUsages, usage) {
		if _, err := pki.ParseUsage(string(usage)); err != nil {
			return "", err
		}
		return "", fmt.Errorf("%w: %s (members enroll for auth or sign)", ErrNotEnrollable, usage)
	}
	ck, err := check(SignRequest{CSR: csrPEM, Member: member, Usage: usage})
	if err != nil {
		return "", err
	}
	e := Enrollment{
		ID:          uuid.NewString(),
		Member:      ck.member.String(),
		Usage:       ck.usage,
		State:       StatePending,
		CSR:         string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: ck.csr.Raw})),
		SubmittedAt: c.now().UTC(),
		SubmittedBy: actor(from),
	}
	err = c.store.update(ctx, func(t *tx) error {
		n := 0
		if err := t.each(bucketEnrollments, func(_, v []byte) error {
			var p struct{ State EnrollmentState }
			if json.Unmarshal(v, &p) == nil && p.State == StatePending {
				n++
			}
			return nil
		}); err != nil {
			return err
		}
		if n >= c.maxPending {
			return fmt.Errorf("%w (%d)", ErrTooManyPending, n)
		}
		if err := t.put(bucketEnrollments, e.ID, e); err != nil {
			return err
		}
		return t.audit(AuditRecord{
			Time: e.SubmittedAt, Actor: e.SubmittedBy, Action: ActionSubmit,
			Enrollment: e.ID, Member: e.Member, Usage: e.Usage,
		})
	})
	if err != nil {
		return "", err
	}
	return e.ID, nil
}

// Pending returns the enrollments waiting for a decision, oldest first.
func (c *CA) Pending(ctx context.Context) ([]Enrollment, error) {
	var out []Enrollment
	err := c.store.view(ctx, func(t *tx) error {
		return t.each(bucketEnrollments, func(k, v []byte) error {
			var e Enrollment
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("ca: corrupt enrollment %s: %w", k, err)
			}
			if e.State == StatePending {
				out = append(out, e)
			}
			return nil
		})
	})
	slices.SortStableFunc(out, func(a, b Enrollment) int { return a.SubmittedAt.Compare(b.SubmittedAt) })
	return out, err
}

// Enrollment returns an enrollment by id (ErrNotFound if there is none),
// with its certificate chain once issued.
func (c *CA) Enrollment(ctx context.Context, id string) (*Enrollment, error) {
	var (
		e   Enrollment
		rec Record
	)
	err := c.store.view(ctx, func(t *tx) error {
		ok, err := t.get(bucketEnrollments, id, &e)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%w: enrollment %q", ErrNotFound, truncate(id))
		}
		if e.State == StateIssued {
			if ok, err := t.get(bucketCerts, e.Serial, &rec); err != nil {
				return err
			} else if !ok {
				return fmt.Errorf("ca: enrollment %s names serial %s, which is not in the database", id, e.Serial)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if e.State == StateIssued {
		cert, err := rec.Certificate()
		if err != nil {
			return nil, fmt.Errorf("ca: stored certificate %s: %w", rec.Serial, err)
		}
		e.Chain = []*x509.Certificate{cert, c.cert}
	}
	return &e, nil
}

// Approve issues the certificate an enrollment asks for, recording operator
// as the one who decided. validity 0 is the default. It returns the
// certificate; an enrollment already decided is ErrNotPending.
func (c *CA) Approve(ctx context.Context, id, operator string, validity time.Duration) (*x509.Certificate, error) {
	var cert *x509.Certificate
	err := c.store.update(ctx, func(t *tx) error {
		e, err := pendingTx(t, id)
		if err != nil {
			return err
		}
		member, err := pki.ParseMemberID(e.Member)
		if err != nil {
			return err
		}
		cert, err = c.signTx(t, SignRequest{
			CSR: []byte(e.CSR), Member: member, Usage: e.Usage,
			Operator: operator, Validity: validity, enrollment: e.ID,
		})
		if err != nil {
			return err
		}
		e.State = StateIssued
		e.DecidedAt = c.now().UTC()
		e.DecidedBy = actor(operator)
		e.Serial = serialHex(cert.SerialNumber)
		if err := t.put(bucketEnrollments, e.ID, e); err != nil {
			return err
		}
		return t.audit(AuditRecord{
			Time: e.DecidedAt, Actor: e.DecidedBy, Action: ActionApprove,
			Enrollment: e.ID, Serial: e.Serial, Member: e.Member, Usage: e.Usage,
		})
	})
	if err != nil {
		return nil, err
	}
	return cert, nil
}

// Reject refuses an enrollment, recording operator and reason, which the
// member sees when it fetches the enrollment.
func (c *CA) Reject(ctx context.Context, id, operator, reason string) error {
	if len(reason) > maxReason {
		return fmt.Errorf("%w: reason longer than %d bytes", ErrBadRequest, maxReason)
	}
	return c.store.update(ctx, func(t *tx) error {
		e, err := pendingTx(t, id)
		if err != nil {
			return err
		}
		e.State = StateRejected
		e.DecidedAt = c.now().UTC()
		e.DecidedBy = actor(operator)
		e.Reason = reason
		if err := t.put(bucketEnrollments, e.ID, e); err != nil {
			return err
		}
		return t.audit(AuditRecord{
			Time: e.DecidedAt, Actor: e.DecidedBy, Action: ActionReject,
			Enrollment: e.ID, Member: e.Member, Usage: e.Usage, Detail: reason,
		})
	})
}

func pendingTx(t *tx, id string) (*Enrollment, error) {
	var e Enrollment
	ok, err := t.get(bucketEnrollments, id, &e)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("%w: enrollment %q", ErrNotFound, truncate(id))
	}
	if e.State != StatePending {
		return nil, fmt.Errorf("%w: %s is %s", ErrNotPending, id, e.State)
	}
	return &e, nil
}
