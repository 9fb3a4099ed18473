// Package ocsp is Passerelle's OCSP (RFC 6960) responder and client.
//
// Responder side: NewResponder builds an http.Handler that answers
// application/ocsp-request POSTs to /ocsp and GETs of /ocsp/{base64 request}
// for the certificates of one issuer. It looks every request up in a
// StatusSource (the CA's database), so a revocation shows at once, and
// reuses a recently signed response per serial (ResponderConfig.CacheFor),
// since signing is the costly part. Responses are signed by the CA itself or
// by a delegated responder certificate with the OCSPSigning EKU, carry
// thisUpdate/nextUpdate, and echo the request's nonce. Mount it on a prefix
// (both /ocsp and /ocsp/...); Responder.Route does that without the path
// cleaning of http.ServeMux, which would corrupt base64 holding "//".
//
// Client side:
//   - ParseAndVerify checks a DER response offline (what a receiver does with
//     the response a sender attached): the signer must be the issuer or a
//     certificate with the OCSPSigning EKU issued by it (else
//     ErrUnauthorizedResponder), the response must name the certificate, and
//     it must be fresh (younger than maxAge and not past nextUpdate, else
//     ErrStale). It returns ErrRevoked (as *RevokedError) or ErrUnknownCert
//     along with the response when the status is not good.
//   - Fetch / Client.Fetch ask a responder over HTTP; Client.Status caches
//     per certificate until the response stops being fresh.
//   - Stapler keeps a server's own certificate's response fresh in the
//     background (refreshing at half the freshness limit, keeping the last
//     good response while the responder is down) for attaching to every
//     message; Stapler.Staple fails closed once nothing fresh is left.
package ocsp
