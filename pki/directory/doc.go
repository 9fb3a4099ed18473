// Package directory is Passerelle's signed federation directory: the one
// document, published by the federation operator, that tells every security
// server who the members are, where their security servers listen and which
// TLS certificate each presents, which CAs, OCSP responders, TSAs and hash
// registries to trust, and the federation-wide parameters (OCSP freshness,
// timestamp interval and failure period, replay window, poll interval).
//
// The wire form is a compact JWS (RFC 7515) whose payload is the document as
// JSON, signed by a key whose certificate has the pki.UsageDirectory profile,
// with the signer's chain in the protected "x5c" header and the explicit type
// "typ": "passerelle-directory+json". Any JOSE library verifies it; see
// docs/directory.md.
//
// Entry points:
//   - Document and its lookups (ServersFor, Member, ServesClient, RootPool,
//     ...): the verified, immutable content.
//   - Sign and Verifier.Verify: the signed form.
//   - Draft, LoadDraft, SignDir: the federation operator's source document
//     in a directory on disk, edited by `passerelle directory` and signed
//     into DIR/directory.jws.
//   - NewHandler: serves the latest signed document (GET /directory).
//   - Poller (with HTTPSource or FileSource) and Fetch: what a security
//     server runs; it never goes back to an older serial, persists the
//     highest serial it accepted, and reports ErrExpired once its copy has
//     expired.
package directory
