// Package messagelog is the security server's durable message log: every
// request and response a security server sends or receives, on the consumer
// and the provider side, with its signature, signer chain and OCSP response,
// later joined by its RFC 3161 timestamp and its hash-registry receipt.
//
// Entry points:
//
//   - [Open] a [Log] in a directory ([Config]); [Log.Close] drains and closes it.
//   - [Log.Append] (or [Log.AppendStream] for a streamed body) stores a
//     [Record] and returns only once it is fsynced; the proxies call it on
//     every message before forwarding or returning it. Concurrent appends
//     are group-committed by one committer goroutine: whatever is queued
//     while a group is written goes into the next one, so a lone writer
//     pays one fdatasync and many writers share them. A write failure (a
//     full disk: [ErrFull]) is an error wrapping [ErrStorage], never a
//     half-written record: the server refuses the message.
//   - [Log.AttachTimestamp] and [Log.AttachReceipt] join the evidence for a
//     message [Hash] (SHA-256 of the signed message as exchanged);
//     idempotent (the first one attached is kept), applied in the
//     applier's transactions. [Log.AttachMany] does it for a TSA's or the
//     registry's whole batch with one wait.
//   - Lookups: [Log.Get] by record id, [Log.ByHash], [Log.ByMessageID]
//     (optionally narrowed by client), [Log.List] to browse, [Log.OpenBody].
//   - [Log.Pending] lists records not yet timestamped or registered, to
//     re-feed the batcher and the outbox at start-up.
//   - [Log.Cleanup] applies retention and never deletes a record that is not
//     yet both timestamped and registered.
//   - [Log.Stats] returns the numbers the server exports as metrics.
//
// # Storage
//
// The records themselves live in segment files, Dir/wal/"<number as 16 hex
// digits>.wal": sequences of frames (uint32 length ‖ uint32 CRC-32C ‖ the
// encoded record). The committer appends a whole group of records to the
// current segment with one write and one fdatasync, and an append is
// acknowledged then. A segment past 64 MiB or an hour old is closed and the
// next group starts another.
//
// Dir/messagelog.db, a bbolt database, indexes them. An applier indexes the
// acknowledged records in large transactions, letting them gather for up to
// 100 ms (a bbolt commit rewrites every page it touches and costs two
// fdatasyncs, about the same for one record as for hundreds); a reader
// (Get, ByHash, List, Pending, Stats...) first waits for what is queued to
// be applied, so it sees every acknowledged append. The database records how
// far the segments are applied; at Open, the records after that point (left
// by a crash) are applied first. A frame cut short or failing its CRC ends
// its segment: a write never acknowledged. A failed group write is cut off
// its segment; if even that fails, a marker file "<segment>.end" records
// where the acknowledged bytes end and replay reads no further (if the
// marker cannot be written either, every append is refused until restart). Should the database refuse
// acknowledged records (full), they stay in their segment, new appends are
// refused with the same error, and the applier retries every second.
// Attachments are not written to segments: they are applied in the
// applier's next transaction and return once it has committed. A segment is
// removed by the Cleanup that deletes its last record (or at Open when none
// is left).
//
// Dir/blobs holds the blobs (a body, or a signed message such as a large
// SOAP envelope) longer than Config.InlineThreshold (64 KiB), one file per
// blob named "<record id as 16 hex digits>.body" or ".signed". A blob file
// is written and fsynced, and its directory fsynced, before its record's
// segment write; a file without a record (a crash in between) is removed at
// the next Open. Record ids are reserved when an Append starts, so they are
// unique and increasing but may be written slightly out of order.
//
// Buckets: records (id → refTag 0x10 ‖ segment ‖ frame offset ‖ payload
// length; or, from earlier versions, the encoded record itself), msgid
// (uvarint(len) ‖ message id ‖ id), hash (hash ‖ id), time (time ‖ id, for
// retention), pending (id → flags ‖ hash ‖ time, for records still missing
// a timestamp or receipt), stamps (id → 0x11 ‖ SHA-256 of the token ‖ the
// timestamp encoded without its token), tokens (SHA-256 → uint64 stamps
// referring to it ‖ the token: one RFC 3161 token covers a whole batch),
// receipts (id → receipt), segments (segment → live records) and meta
// (schema version, highest id, applied position, counters). Ids and times
// are 8-byte big-endian; times are Unix nanoseconds with the sign bit
// flipped so that they sort. Only the msgid and hash indexes take keys in
// no particular order; every other key of an append is close to the
// previous appends' (a commit rewrites few pages). Stamps and receipts are
// stored per record, not per hash, for that reason (earlier versions keyed
// them by hash; those are still read).
//
// # Encoding
//
// Every stored value (and write-ahead log payload) is one format byte, then
// the value. Values are written in version 2 (0x02, binary: the fields
// below in order, strings and byte strings as uvarint length ‖ bytes,
// integers as uvarints, times as zig-zag varint Unix nanoseconds, lists as
// uvarint count ‖ elements, absent optional fields empty; see binary.go).
// Version 1 (0x01, a JSON object: byte strings in standard base64, hashes in
// lower-case hex, times RFC 3339 UTC) is still read. A record:
//
//	id, messageId, kind ("request"|"response"), direction ("sent"|"received"),
//	side ("consumer"|"provider"), protocol ("rest"|"soap"), client
//	("I/C/M[/S]"), service {client, code, version?}, time, hash,
//	signedStorage ("inline"|"file"), signed (inline only), signedLen,
//	signerChain [DER...], ocsp (DER), requestHash? (responses: the hash of
//	the request answered), status? (responses), bodyMode ("full"|"metadata"),
//	bodyStorage ("none"|"inline"|"file"), body (inline only), bodyLen,
//	bodyDigest (SHA-256 of the body, kept in metadata-only mode too).
//
// A timestamp: {token (DER TimeStampToken), path [hash...], batchSize,
// index, time}. A receipt: {proof (C2SP tlog-proof bytes), index}. Unknown
// fields and trailing bytes are refused; a later format takes another first
// byte.
package messagelog
