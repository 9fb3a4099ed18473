package ocsp

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// The few RFC 6960 structures golang.org/x/crypto/ocsp does not expose:
// request extensions (the nonce), response extensions (its echo) and the
// issuer hashes of a response's CertID. Everything else goes through
// x/crypto/ocsp.

// oidNonce is id-pkix-ocsp-nonce (RFC 6960 §4.4.1).
var oidNonce = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 2}

// maxNonceLen bounds the nonce extension value we echo (RFC 8954 allows
// 1-32 octets inside an OCTET STRING; be lenient, but bounded).
const maxNonceLen = 128

type asn1Request struct {
	TBSRequest        asn1TBSRequest
	OptionalSignature asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type asn1TBSRequest struct {
	Version           int           `asn1:"explicit,tag:0,default:0,optional"`
	RequestorName     asn1.RawValue `asn1:"explicit,tag:1,optional"`
	RequestList       []asn1.RawValue
	RequestExtensions []pkix.Extension `asn1:"explicit,tag:2,optional"`
}

// requestInfo is what the x/crypto request parser drops: how many
// certificates are asked about, and the nonce extension.
type requestInfo struct {
	count int
	nonce *pkix.Extension
}

func parseRequestInfo(der []byte) (requestInfo, error) {
	var req asn1Request
	rest, err := asn1.Unmarshal(der, &req)
	if err != nil {
		return requestInfo{}, err
	}
	if len(rest) > 0 {
		return requestInfo{}, errors.New("trailing data after OCSP request")
	}
	info := requestInfo{count: len(req.TBSRequest.RequestList)}
	for i, ext := range req.TBSRequest.RequestExtensions {
		if ext.Id.Equal(oidNonce) {
			if len(ext.Value) == 0 || len(ext.Value) > maxNonceLen {
				return requestInfo{}, fmt.Errorf("nonce of %d bytes", len(ext.Value))
			}
			info.nonce = &req.TBSRequest.RequestExtensions[i]
		}
	}
	return info, nil
}

type asn1Response struct {
	Status   asn1.Enumerated
	Response asn1ResponseBytes `asn1:"explicit,tag:0,optional"`
}

type asn1ResponseBytes struct {
	ResponseType asn1.ObjectIdentifier
	Response     []byte
}

type asn1BasicResponse struct {
	TBSResponseData    asn1.RawValue
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Signature          asn1.BitString
	Certificates       []asn1.RawValue `asn1:"explicit,tag:0,optional"`
}

type asn1ResponseData struct {
	Version            int `asn1:"optional,default:0,explicit,tag:0"`
	RawResponderID     asn1.RawValue
	ProducedAt         time.Time `asn1:"generalized"`
	Responses          []asn1SingleResponse
	ResponseExtensions []pkix.Extension `asn1:"explicit,tag:1,optional"`
}

type asn1SingleResponse struct {
	CertID asn1CertID
	// The rest (status, times, extensions) is read by x/crypto/ocsp.
}

type asn1CertID struct {
	HashAlgorithm  pkix.AlgorithmIdentifier
	IssuerNameHash []byte
	IssuerKeyHash  []byte
	SerialNumber   *big.Int
}

var oidOCSPBasic = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 48, 1, 1}

// splitResponse decodes the envelope of a successful basic response.
func splitResponse(der []byte) (asn1BasicResponse, asn1ResponseData, error) {
	var resp asn1Response
	if rest, err := asn1.Unmarshal(der, &resp); err != nil || len(rest) > 0 {
		return asn1BasicResponse{}, asn1ResponseData{}, errors.New("malformed OCSP response")
	}
	if resp.Status != 0 || !resp.Response.ResponseType.Equal(oidOCSPBasic) {
		return asn1BasicResponse{}, asn1ResponseData{}, errors.New("not a successful basic OCSP response")
	}
	var basic asn1BasicResponse
	if rest, err := asn1.Unmarshal(resp.Response.Response, &basic); err != nil || len(rest) > 0 {
		return asn1BasicResponse{}, asn1ResponseData{}, errors.New("malformed basic OCSP response")
	}
	var data asn1ResponseData
	if rest, err := asn1.Unmarshal(basic.TBSResponseData.FullBytes, &data); err != nil || len(rest) > 0 {
		return asn1BasicResponse{}, asn1ResponseData{}, errors.New("malformed OCSP response data")
	}
	return basic, data, nil
}

// addResponseExtension returns der (a signed basic response made by
// x/crypto/ocsp, which has no responseExtensions) with ext added to its
// responseExtensions and signed again by signer.
func addResponseExtension(der []byte, ext pkix.Extension, signer crypto.Signer) ([]byte, error) {
	basic, data, err := splitResponse(der)
	if err != nil {
		return nil, err
	}
	if len(data.ResponseExtensions) > 0 {
		return nil, errors.New("response already has extensions")
	}
	exts, err := asn1.Marshal([]pkix.Extension{ext})
	if err != nil {
		return nil, err
	}
	tagged, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 1, IsCompound: true, Bytes: exts})
	if err != nil {
		return nil, err
	}
	content := append(append([]byte(nil), basic.TBSResponseData.Bytes...), tagged...)
	tbs, err := asn1.Marshal(asn1.RawValue{Class: asn1.ClassUniversal, Tag: asn1.TagSequence, IsCompound: true, Bytes: content})
	if err != nil {
		return nil, err
	}
	sig, err := signTBS(signer, tbs)
	if err != nil {
		return nil, err
	}
	basic.TBSResponseData = asn1.RawValue{FullBytes: tbs}
	basic.Signature = asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}
	basicDER, err := asn1.Marshal(basic)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(asn1Response{Response: asn1ResponseBytes{ResponseType: oidOCSPBasic, Response: basicDER}})
}

// signTBS signs with the hash x/crypto/ocsp picks for the key (and so names
// in the signatureAlgorithm it already wrote).
func signTBS(signer crypto.Signer, tbs []byte) ([]byte, error) {
	var h crypto.Hash
	switch pub := signer.Public().(type) {
	case *rsa.PublicKey:
		h = crypto.SHA256
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P384():
			h = crypto.SHA384
		case elliptic.P521():
			h = crypto.SHA512
		default:
			h = crypto.SHA256
		}
	case ed25519.PublicKey:
		return signer.Sign(rand.Reader, tbs, crypto.Hash(0))
	default:
		return nil, fmt.Errorf("unsupported signer key %T", pub)
	}
	d := h.New()
	d.Write(tbs)
	return signer.Sign(rand.Reader, d.Sum(nil), h)
}
