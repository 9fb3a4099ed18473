package ca

import (
	"context"
	"errors"
	"math/big"

	"github.com/passerelle/passerelle/pki/ocsp"
)

// OCSPStatus answers the OCSP responder (it makes *CA an ocsp.StatusSource):
// good for a certificate the database holds unrevoked, revoked with time and
// reason, unknown for a serial this CA never issued. The database is read on
// every call, so a revocation shows at once, also when another process made
// it.
func (c *CA) OCSPStatus(ctx context.Context, serial *big.Int) (ocsp.Status, error) {
	rec, err := c.Lookup(ctx, serial)
	if errors.Is(err, ErrNotFound) {
		return ocsp.Status{Status: ocsp.Unknown}, nil
	}
	if err != nil {
		return ocsp.Status{}, err
	}
	if rec.Revoked {
		return ocsp.Status{Status: ocsp.Revoked, RevokedAt: rec.RevokedAt, Reason: int(rec.Reason)}, nil
	}
	return ocsp.Status{Status: ocsp.Good}, nil
}

var _ ocsp.StatusSource = (*CA)(nil)
