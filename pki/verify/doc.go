// Package verify is the certificate validation every Passerelle receiver
// runs on a peer's certificate: the chain to the trusted roots, the
// validity period, the key usage and extended key usage the purpose
// (pki.Usage) demands, a good and fresh OCSP response for the leaf, and the
// member identifier the certificate binds (pki.MemberFromCert).
//
// Entry points: New(Config) returns a Verifier, safe for concurrent use;
// Verifier.Verify(ctx, chain, ocspDER, usage) returns the member or an
// error that callers branch on with errors.Is: ErrUntrusted, ErrExpired,
// ErrNotYetValid, ErrWrongUsage, ErrRevoked (errors.As gives
// *ocsp.RevokedError), ErrOCSPUnknown, ErrStaleOCSP,
// ErrUnauthorizedResponder, ErrBadOCSP, ErrNoMemberID. VerifyChain does all
// but the revocation check, for callers that check revocation themselves.
//
// Where the OCSP response comes from is explicit: Verify checks the DER
// response the sender attached (the design: each sender carries its own
// fresh response, receivers never query OCSP per message). Only when the
// Config names an OCSP client (Config.FetchOCSP) does a missing response
// get fetched, and cached, through it; otherwise a missing response is
// ErrStaleOCSP. Only the leaf's revocation is checked.
//
// Successful chain verifications are cached per exact chain and usage (a
// server sees the same peer certificate on every message), and verified
// OCSP responses per response bytes; the cache never outlives a
// certificate's validity, and freshness is checked on every call.
package verify
