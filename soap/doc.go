// Package soap is Passerelle's SOAP protocol core: X-Road message protocol
// 4.0 envelopes (SOAP 1.1 and 1.2), X-Road faults, requestHash, hardened XML
// intake, attachments, and the XML-DSig signature that security servers put
// on the envelopes they exchange. It does no network I/O; the security server
// composes it.
//
// # Entry points
//
//   - ReadMessage: a POST body (bare envelope, SwA or MTOM multipart/related)
//     into its SOAP part and attachment digests, streaming attachments to a
//     caller's Spool with bounded memory.
//   - ParseEnvelope / ParseRequest: hardened parsing and X-Road validation;
//     failures are *Error carrying the X-Road code (MissingHeaderField,
//     InvalidProtocolVersion, MissingBody, …).
//   - NewFault, Fault.Marshal, WriteFault: the one SOAP fault renderer (SOAP 1.1
//     faultcode/faultstring/faultactor/detail/faultDetail as X-Road writes it;
//     SOAP 1.2 with the X-Road code as Subcode). ParseFault reads one back.
//   - RequestHash, InsertRequestHash (provider side), Envelope.CheckRequestHash
//     (consumer side): X-Road's requestHash, SHA-512 of the request's SOAP part.
//   - Sign, Verify, Verified.Check*, Verified.Stripped / Strip: the signature
//     between security servers. Envelope.Sign signs an envelope already
//     parsed (no second parse), with SignOptions.RequestHashOf inserting the
//     provider's requestHash in the same step.
//
// # Hardened XML
//
// Every envelope is parsed once, in one pass that applies the checks, builds
// the etree tree and records where the Header and our Security element sit
// in the bytes. The tokens are encoding/xml's (the tokenizer etree uses); a
// plain envelope (ASCII names, no references, CDATA, comments or CR) is
// tokenized by a faster scanner that yields the same tokens, and anything
// else goes through encoding/xml itself. The checks: no DTD (any <!DOCTYPE or other directive), no entity beyond the five
// predefined ones, no processing instruction but the XML declaration, no
// comment inside the root element, no duplicate attribute on an element, no
// two ID attributes (local name Id, ID or id, any prefix) with one value,
// one root, and Limits on size, depth, element count and attributes per
// element (DefaultLimits: 10 MiB, 64, 100,000, 64). Only UTF-8.
//
// # Signed envelope format
//
// The sending security server inserts one element as the last child of the
// SOAP Header and changes no other byte:
//
//	<pas:Security xmlns:pas="urn:passerelle:soap:security:1">
//	  <pas:SignedProperties>
//	    <pas:SigningTime>2026-03-01T12:00:00Z</pas:SigningTime>      (RFC 3339, UTC)
//	    <pas:OCSPResponse>base64 DER</pas:OCSPResponse>             (signer's, optional)
//	    <pas:Attachment ContentID="<data.bin>" ContentType="…" TransferEncoding="base64"
//	        Size="28" DigestAlgorithm="http://www.w3.org/2001/04/xmlenc#sha256">base64</pas:Attachment>   (0..n, in order)
//	    <pas:RequestDigest DigestAlgorithm="…#sha256">base64</pas:RequestDigest>   (responses)
//	  </pas:SignedProperties>
//	  <ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#">
//	    <ds:SignedInfo>
//	      <ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
//	      <ds:SignatureMethod Algorithm="…xmldsig-more#ecdsa-sha256 | #rsa-sha256"/>
//	      <ds:Reference URI="">
//	        <ds:Transforms>
//	          <ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>
//	          <ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>
//	        </ds:Transforms>
//	        <ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/>
//	        <ds:DigestValue>…</ds:DigestValue>
//	      </ds:Reference>
//	    </ds:SignedInfo>
//	    <ds:SignatureValue>…</ds:SignatureValue>   (ECDSA: raw r‖s, as XML-DSig requires)
//	    <ds:KeyInfo><ds:X509Data><ds:X509Certificate>leaf</ds:X509Certificate>…chain…</ds:X509Data></ds:KeyInfo>
//	  </ds:Signature>
//	</pas:Security>
//
// The single reference, URI="" with the enveloped-signature transform, covers
// the whole envelope except the Signature: Body, every header (X-Road's and
// any other) and SignedProperties. It is written with goxmldsig
// (exclusive C14N chosen explicitly; its signer wrapped to emit r‖s) and
// verifies with xmlsec1 --verify --trusted-pem ca.pem (no --id-attr needed).
// This deliberately replaces per-element references by Id: nothing in the
// envelope is unsigned, so signature wrapping has nowhere to hide, and no Id
// attribute is added to the client's elements, so stripping pas:Security
// gives back the client's bytes exactly and X-Road's requestHash still
// matches.
//
// Verify works on the received bytes (never on a tree built by Sign) and
// refuses: anything but exactly one Header, one Body and one pas:Security
// (last in the Header) holding SignedProperties and the document's only
// ds:Signature; a SignedInfo other than the one above (other canonicalization,
// transforms, digest, extra references, references by Id); a DER ECDSA value;
// a digest or signature mismatch. Comments inside the envelope are refused on
// both sides, since C14N without comments would let them be injected into
// signed text. Exclusive C14N is written from the tree by this package, byte
// for byte what goxmldsig's canonicalizer produces (compared in tests). It then returns the envelope parsed from those same bytes, the
// signer's member (pki.MemberFromCert of the KeyInfo leaf), the chain and
// OCSP response for the caller to validate (pki/verify), the signing time,
// attachment digests and request digest. The caller checks the member
// (CheckClient for requests, CheckServiceProvider for responses), the
// attachments it received (CheckAttachments) and, for a response, that it
// answers the request it sent (CheckRequestDigest: SHA-256 of the signed
// request bytes, MessageDigest).
package soap
