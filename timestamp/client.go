package timestamp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"time"

	tsp "github.com/digitorus/timestamp"
)

// Token is a verified time-stamp token.
type Token struct {
	DER []byte // the TimeStampToken (CMS ContentInfo), as stored in evidence
	Info
}

// Stamper gets a verified token over a digest. Client implements it; the
// Batcher takes a list of them. Implementations must be safe for concurrent
// use and return errors wrapping ErrTSAUnavailable, ErrRejected or one of the
// verification errors.
type Stamper interface {
	Stamp(ctx context.Context, digest []byte, h crypto.Hash) (*Token, error)
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// URL of the TSA (required), e.g. http://tsa.example:3161/.
	URL string
	// Roots the TSA certificate must chain to (required).
	Roots *x509.CertPool
	// Certificates to verify with when tokens do not carry them (certReq off).
	Certificates []*x509.Certificate
	// NoCertReq asks the TSA not to embed its certificate (smaller tokens;
	// then the TSA certificate must be in Certificates).
	NoCertReq bool
	// Policy, when set, is requested and demanded.
	Policy asn1.ObjectIdentifier
	// MaxSkew bounds |genTime - local time| (default 5 minutes).
	MaxSkew time.Duration
	// HTTPClient (a client with a 10 s timeout when nil).
	HTTPClient *http.Client
}

// Client asks one TSA for tokens and verifies them. Safe for concurrent use.
type Client struct {
	cfg ClientConfig
}

// DefaultMaxSkew is the genTime skew a Client tolerates by default.
const DefaultMaxSkew = 5 * time.Minute

// NewClient checks cfg and fills in defaults.
func NewClient(cfg ClientConfig) (*Client, error) {
	if cfg.URL == "" {
		return nil, errors.New("timestamp: client config: URL is required")
	}
	if cfg.Roots == nil {
		return nil, errors.New("timestamp: client config: roots are required")
	}
	if cfg.MaxSkew == 0 {
		cfg.MaxSkew = DefaultMaxSkew
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return &Client{cfg: cfg}, nil
}

// URL is the TSA's address.
func (c *Client) URL() string { return c.cfg.URL }

// Stamp requests a token over digest (computed with h) with a fresh 64-bit
// nonce, and verifies it: chain, EKU, imprint, nonce, policy, genTime skew.
func (c *Client) Stamp(ctx context.Context, digest []byte, h crypto.Hash) (*Token, error) {
	if err := CheckHash(h, digest); err != nil {
		return nil, err
	}
	nonce, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return nil, err
	}
	req := &tsp.Request{
		HashAlgorithm: h,
		HashedMessage: digest,
		Certificates:  !c.cfg.NoCertReq,
		TSAPolicyOID:  c.cfg.Policy,
		Nonce:         nonce,
	}
	query, err := req.Marshal()
	if err != nil {
		return nil, fmt.Errorf("timestamp: encode query: %w", err)
	}
	reply, err := c.post(ctx, query)
	if err != nil {
		return nil, err
	}
	token, err := TokenFromReply(reply)
	if err != nil {
		return nil, err
	}
	info, err := VerifyToken(token, digest, c.cfg.Roots, VerifyOptions{
		Certificates: c.cfg.Certificates,
		Hash:         h,
		Nonce:        nonce,
		Policy:       c.cfg.Policy,
		MaxSkew:      c.cfg.MaxSkew,
	})
	if err != nil {
		return nil, err
	}
	return &Token{DER: token, Info: *info}, nil
}

func (c *Client) post(ctx context.Context, query []byte) ([]byte, error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, c.cfg.URL, bytes.NewReader(query))
	if err != nil {
		return nil, fmt.Errorf("timestamp: %w", err)
	}
	hr.Header.Set("Content-Type", ContentTypeQuery)
	hr.Header.Set("Accept", ContentTypeReply)
	resp, err := c.cfg.HTTPClient.Do(hr)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrTSAUnavailable, c.cfg.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxTokenSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: read reply: %v", ErrTSAUnavailable, c.cfg.URL, err)
	}
	if len(body) > MaxTokenSize {
		return nil, fmt.Errorf("%w: reply over %d bytes", ErrBadToken, MaxTokenSize)
	}
	if resp.Header.Get("Content-Type") != ContentTypeReply {
		return nil, fmt.Errorf("%w: %s: HTTP %d, content type %q", ErrTSAUnavailable, c.cfg.URL, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	return body, nil
}
