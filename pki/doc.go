// Package pki is Passerelle's trust layer: X-Road identifiers and their
// binding into certificates, key generation and certificate signing requests,
// and the issuance profiles of each certificate usage.
//
// Entry points:
//   - ParseClientID, ParseServiceID, MemberURI, MemberFromCert: identifiers
//     and the SAN URI scheme urn:passerelle:member:INSTANCE/CLASS/MEMBER.
//   - GenerateKey, WritePrivateKey, LoadPrivateKey, CreateCSR, ParseCSR: an
//     institution's keys.
//   - Usage and Profile: what each certificate usage allows.
//
// Sub-packages hold the CA (pki/ca), OCSP (pki/ocsp), certificate validation
// (pki/verify) and the signed federation directory (pki/directory).
package pki
