package timestamp

import (
	"errors"
	"fmt"

	tsp "github.com/digitorus/timestamp"
)

// Errors callers branch on, with errors.Is. Every error this package returns
// for a token, a reply or a proof wraps one of them.
var (
	// ErrTSAUnavailable: no TSA could be reached, or it answered with
	// something other than a time-stamp reply (transport error, HTTP 5xx).
	ErrTSAUnavailable = errors.New("timestamp: TSA unavailable")
	// ErrRejected: the TSA answered with a PKIStatus other than granted; see
	// RejectedError for the status and failure info.
	ErrRejected = errors.New("timestamp: request rejected by the TSA")
	// ErrBadToken: the token or reply does not parse, is not a TSTInfo signed
	// by one signer, or its signature does not verify.
	ErrBadToken = errors.New("timestamp: bad time-stamp token")
	// ErrUntrustedTSA: the signer's certificate does not chain to the roots,
	// was not valid at genTime, or is not a TSA certificate (critical,
	// sole extended key usage timeStamping).
	ErrUntrustedTSA = errors.New("timestamp: untrusted TSA")
	// ErrImprintMismatch: the token is over another hash (or another
	// algorithm) than the one being checked.
	ErrImprintMismatch = errors.New("timestamp: message imprint mismatch")
	// ErrNonceMismatch: the token does not echo the request's nonce.
	ErrNonceMismatch = errors.New("timestamp: nonce mismatch")
	// ErrPolicyMismatch: the token was issued under another TSA policy.
	ErrPolicyMismatch = errors.New("timestamp: TSA policy mismatch")
	// ErrTimeSkew: genTime is further from the expected time than allowed.
	ErrTimeSkew = errors.New("timestamp: genTime outside the allowed skew")
	// ErrUnsupportedHash: the hash algorithm is not SHA-256, SHA-384 or SHA-512,
	// or the digest has the wrong length for it.
	ErrUnsupportedHash = errors.New("timestamp: unsupported hash algorithm")
	// ErrBadProof: a batch path does not lead from the message hash to the
	// root the token covers, or does not parse.
	ErrBadProof = errors.New("timestamp: bad batch proof")
	// ErrClosed: the Batcher has been closed.
	ErrClosed = errors.New("timestamp: batcher closed")
)

// RejectedError is a TSA's refusal: the PKIStatus and failure info of its reply.
type RejectedError struct {
	Status   tsp.Status
	FailInfo tsp.FailureInfo
	Text     string // the reply's statusString, if any (from the TSA, not trusted)
}

func (e *RejectedError) Error() string {
	s := fmt.Sprintf("timestamp: TSA rejected the request: status %d", int(e.Status))
	if e.FailInfo != tsp.UnknownFailureInfo {
		s += fmt.Sprintf(", failInfo %d (%s)", int(e.FailInfo), e.FailInfo)
	}
	if e.Text != "" {
		s += fmt.Sprintf(": %q", e.Text)
	}
	return s
}

// Is makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }
