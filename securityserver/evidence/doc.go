// Package evidence builds and verifies evidence bundles: everything a
// security server logged about one exchange (a request and its response),
// packed in a ZIP that an auditor verifies offline against a trust directory.
//
// A bundle holds manifest.json (Manifest: format version, the exchange's
// identifiers, the exporting server, and the list of files with their roles)
// and, for each of the two messages, the signed message as exchanged (REST:
// the compact JWS; SOAP: the signed envelope), its body when it was logged
// (REST body; SOAP attachments), the signer's chain (PEM), the signer's OCSP
// response (DER), the RFC 3161 token of its timestamp batch with the
// message's path in the batch, and the hash registry's receipt
// (c2sp.org/tlog-proof@v1). docs/evidence.md specifies the format.
//
// Entry points:
//   - Export (over a Source such as *messagelog.Log) selects one exchange's
//     records; Write streams them as a bundle.
//   - Fetch downloads a bundle from a security server's admin API
//     (GET /api/v1/exchanges/{id}/evidence).
//   - LoadTrust reads a trust directory (ca.pem, tsa.pem, registry.vkey);
//     Verify checks a bundle offline and returns a Report listing what each
//     check proved. A failed check makes Verify return an error wrapping
//     ErrVerification (ErrMalformed when the bundle itself does not parse,
//     ErrIncomplete when evidence is missing, e.g. a timestamp not yet
//     attached).
//
// Nothing in the manifest is trusted: it is a table of contents. Every
// claim the report makes is checked against signed data (the messages, the
// OCSP responses, the timestamp tokens, the registry checkpoint), and the
// manifest's identifiers are compared with the signed ones.
package evidence
