// Package hashregistry is Passerelle's shared hash registry: an append-only
// Merkle log (RFC 6962 hashing via golang.org/x/mod/sumdb/tlog) of the hashes
// of every signed message, stored in bbolt, with C2SP checkpoints signed by
// golang.org/x/mod/sumdb/note, so that auditors can check that nobody —
// including the registry's operator — rewrites it unnoticed.
//
// Entry points:
//   - Entry, Entry.Marshal, ParseEntry: the canonical, versioned entry record
//     (member, message hash, kind, submission time).
//   - Checkpoint, ParseCheckpoint, SignCheckpoint, OpenCheckpoint: the C2SP
//     tlog-checkpoint body and its signed note.
//   - ProofFile, ParseProofFile, VerifyReceipt: the c2sp.org/tlog-proof@v1
//     receipt each submitter keeps and anyone verifies offline.
//   - TilePath, ParseTilePath: the C2SP tlog-tiles path layout.
//   - Open → *Log: the bbolt store; Log.Append group-commits concurrent
//     appends into one transaction and one signed checkpoint.
//   - NewServer, Server.NewGRPCServer, Server.Handle: the gRPC service
//     (mTLS, member from the client certificate) and the HTTP tile API.
//   - CheckRevocation(ChainVerifier) → ServerConfig.CheckChain: refuses
//     appends by revoked members (pki/verify with an OCSP client, cached per
//     certificate); an unreachable responder is ErrStatusUnavailable.
//   - Auditor: checks a registry over HTTP (signature, consistency with the
//     last checkpoint seen, forks, and optionally every entry).
//
// The security server's side (a durable outbox that drains to the registry)
// lives in hashregistry/client.
package hashregistry
