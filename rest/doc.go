// Package rest is Passerelle's REST protocol layer, pure (no I/O): X-Road's
// client-facing REST protocol r1, the error format, X-Road-Request-Hash, and
// the JWS signatures that security servers put on every request and
// response they exchange. The security server (securityserver/) composes it.
//
// Entry points:
//   - ParseRequest: an r1 request (or a metaservice request) from a client;
//     DescribeRequest / Request.Descriptor and DescribeResponse: what a
//     signature covers, built the same way by sender and receiver.
//   - EndToEnd: the headers a security server passes on.
//   - Error, ClientError / ClientProxyError / ServerProxyError, WriteError
//     (the one place REST errors reach the wire) and ParseError.
//   - RequestHash, DigestBytes, NewDigester: X-Road-Request-Hash and body
//     digests.
//   - NewSigner, Signer.SignRequest / SignResponse, VerifyRequest /
//     VerifyResponse: compact JWS signatures; ReplayGuard: replay refusal.
//
// # Client side: X-Road REST r1
//
// A client system calls
//
//	{METHOD} /r1/{INSTANCE}/{CLASS}/{MEMBER}/{SUBSYSTEM}/{SERVICE}[/path][?query]
//
// with X-Road-Client: INSTANCE/CLASS/MEMBER[/SUBSYSTEM] (required; if
// repeated, the last counts) and optionally X-Road-Id (generated, UUID v4,
// when missing), X-Road-UserId, X-Road-Issue, X-Road-Represented-Party,
// X-Road-Security-Server. Each identifier part is percent-decoded on its
// own (so %2F stays inside a part; parts allow A-Z a-z 0-9 '()+,-.=?); the
// resource path after the service code and the query are kept exactly as
// received. /listClients, /r1/…/SUBSYSTEM/listMethods, …/allowedMethods and
// …/getOpenAPI?serviceCode=CODE are metaservices (Request.Kind). Hop-by-hop
// headers (Connection and those it lists, Keep-Alive, Proxy-*, TE, Trailer,
// Transfer-Encoding, Upgrade), Host, User-Agent and Server are stripped;
// the others pass unchanged.
//
// # Errors
//
// A security server's error carries the header X-Road-Error: TYPE and a body
//
//	{"type":"Server.ServerProxy.AccessDenied","message":"…","detail":"<uuid>",
//	 "code":"Server.ServerProxy.AccessDenied","error":"…"}
//
// X-Road's type/message/detail plus the interoperability norms' code/error
// (code repeats the type, error the message). With an Accept that prefers
// XML the same fields come as <error><type/><message/><detail/><code/>
// <error/></error>. The status follows the norms (400 malformed request,
// 401 client authentication, 403 access denied, 404 unknown service or
// member, 413 too large, 429 rate limited, 502 service unreachable or
// failing, 504 service timeout, 500 otherwise) or, with ErrorMode.Strict,
// X-Road's own mapping (400 for Client.*, 500 for the rest). Types follow
// X-Road: the prefix Client, Server.ClientProxy or Server.ServerProxy names
// who failed. The internal cause never reaches the wire; detail ties the
// response to the log line. An error without X-Road-Error is the service's
// own and passes as is.
//
// # X-Road-Request-Hash
//
// base64(SHA-512(SHA-512(H) ‖ SHA-512(body))), or base64(SHA-512(H)) for an
// empty body, where H is the canonical serialisation RequestHash documents:
// the method, the r1 path, the raw query and the signed headers, one per
// line. The provider's security server sets it on the response; the
// consumer's recomputes it over what it sent and compares.
//
// # Between security servers
//
// The consumer side forwards the client's request over mTLS: the same
// method, Request.ServicePath() (the r1 path) plus the query, the
// end-to-end headers with X-Road-Client (the one that counts) and X-Road-Id
// set, the body, and the header
//
//	Passerelle-Signature: <compact JWS>
//
// The provider side answers with the service's status, headers and body,
// the X-Road response headers (X-Road-Client, X-Road-Service, X-Road-Id,
// X-Road-Request-Id, X-Road-Request-Hash) and its own Passerelle-Signature.
// Each side strips Passerelle-Signature before passing a message on.
//
// The JWS is compact, with its payload embedded (any JOSE library verifies
// it alone). Its protected header is
//
//	{"alg":"ES256","typ":"passerelle-request+jws","x5c":["<leaf DER, base64>","<CA>"],"ocsp":"<OCSP response DER, base64>"}
//
// alg is ES256 (P-256 keys; ES384 / ES512 for P-384 / P-521) or PS256 (RSA);
// RS256 is accepted on verification. typ is passerelle-request+jws or
// passerelle-response+jws; passerelle-batch+jws is reserved. x5c is the
// signer's chain, leaf first (RFC 7515 §4.1.6); ocsp is the signer's own,
// fresh OCSP response for the leaf, so that the receiver never queries OCSP
// per message. crit and b64 are refused. Base64url segments must be
// canonical (no stray bits), so a signature has exactly one encoding.
//
// The request payload is a JSON object:
//
//	{"v":1,"kind":"request","id":"<X-Road-Id>","client":"I/C/M/S","service":"I/C/M/S/CODE",
//	 "method":"POST","path":"/v2/pets","query":"a=1",
//	 "headers":{"content-type":["application/json"],"x-road-client":["I/C/M/S"],…},
//	 "bodyLength":123,"bodySha256":"<base64url>","signedAt":"2026-03-01T12:00:00.123456789Z"}
//
// and the response payload
//
//	{"v":1,"kind":"response","id":"…","client":"…","service":"…","status":200,
//	 "headers":{…},"bodyLength":…,"bodySha256":"…","request":"<base64url SHA-256 of the request JWS>",
//	 "signedAt":"…"}
//
// headers holds the signed headers (IsSignedHeader: every X-Road-* header
// but X-Road-Error, plus Accept, Accept-Charset, Accept-Language,
// Content-Type, Content-Encoding, Content-Language, Content-Disposition,
// Content-Location, Content-Range, ETag, If-*, Last-Modified, Location,
// Range, Retry-After, SOAPAction), names lower-case, values in received
// order. Unsigned headers (Authorization, Cookie, Date, tracing…) pass but
// carry no evidential weight. The receiver recomputes every field from what
// it received (DescribeRequest, DescribeResponse) and VerifyRequest /
// VerifyResponse compare them all after checking the signature with the
// x5c leaf key; the first difference is reported as a *MismatchError
// naming the field. The receiver then validates the chain, the member
// binding and the OCSP response (pki/verify), and checks signedAt and the
// id against a ReplayGuard.
//
// Consequences for the security server: set Content-Type explicitly before
// writing a body (Go's ResponseWriter would otherwise sniff one after the
// descriptor was computed), and disable transparent compression on the
// client transport between security servers (Go's Transport would
// otherwise add Accept-Encoding and strip Content-Encoding).
//
// # Batch signatures (reserved)
//
// Protocol version 1 signs each message alone. A later version may sign the
// Merkle root (RFC 6962 hashing) of the payloads of concurrent messages
// once, under typ passerelle-batch+jws, each message then carrying its
// payload and inclusion path beside the shared JWS. The version field "v",
// the payload "kind" and the reserved typ let both forms coexist: a
// version-1 receiver refuses a batch signature with ErrMalformed rather
// than misreading it.
package rest
