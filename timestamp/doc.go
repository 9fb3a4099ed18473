// Package timestamp is Passerelle's proof of *when*: an RFC 3161 time-stamping
// authority (TSA), its client, an offline token verifier, and batch
// timestamping, where many message hashes share one token through a Merkle
// tree (RFC 6962 hashing) and each message keeps its path to the root.
//
// Entry points:
//   - Server (NewServer, OpenDir, InitDir): the TSA, an http.Handler for
//     application/timestamp-query → application/timestamp-reply; every
//     issued token is recorded in a Ledger (BoltLedger).
//   - Client (NewClient) and Client.Stamp: ask a TSA for a token and verify it.
//   - VerifyToken: check a token offline (auditors): TSA chain to our roots,
//     critical timeStamping EKU, message imprint, nonce, policy, genTime skew.
//   - NewBatch, Verify, BatchPath: one token over the Merkle root of many
//     message hashes, and each message's proof against it.
//   - Batcher (NewBatcher): collects message hashes durably (bbolt, group
//     commit), flushes on size or interval, tries the configured TSAs in order,
//     keeps what it could not stamp across outages and restarts, hands back
//     Stamps, and reports the age of the oldest unstamped hash.
//
// The ASN.1 of RFC 3161 is github.com/digitorus/timestamp's; where that
// library falls short of the RFC this package says so next to the code that
// makes up for it (see server.go and verify.go).
package timestamp
