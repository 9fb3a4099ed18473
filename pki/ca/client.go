package ca

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/passerelle/passerelle/pki"
)

// Client calls a CA's enrollment API. It is safe for concurrent use.
type Client struct {
	base string
	http *http.Client
}

// NewClient returns a client for the CA at baseURL (e.g.
// http://ca.example:8888); hc nil means a client with a 30 s timeout.
func NewClient(baseURL string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: CA URL %q must be an absolute http(s) URL", ErrBadRequest, baseURL)
	}
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	return &Client{base: strings.TrimRight(baseURL, "/"), http: hc}, nil
}

// APIError is an error answer of the enrollment API.
type APIError struct {
	StatusCode int
	ErrorResponse
}

func (e *APIError) Error() string {
	return fmt.Sprintf("CA answered %d %s: %s (detail %s)", e.StatusCode, e.Code, e.Message, e.Detail)
}

// EnrollmentStatus is what the member learns of its enrollment.
type EnrollmentStatus struct {
	EnrollmentResponse
	Chain []*x509.Certificate // leaf first, once issued
}

// Submit sends a CSR for member and usage and returns the enrollment id.
func (c *Client) Submit(ctx context.Context, csrPEM []byte, member pki.ClientID, usage pki.Usage) (string, error) {
	body, err := json.Marshal(SubmitRequest{CSR: string(csrPEM), Member: member.String(), Usage: usage})
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.base+EnrollmentsPath, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	var resp EnrollmentResponse
	if err := c.do(req, http.StatusAccepted, &resp); err != nil {
		return "", err
	}
	if resp.ID == "" {
		return "", errors.New("ca: enrollment API answered without an id")
	}
	return resp.ID, nil
}

// Get fetches an enrollment. An issued one comes with its chain, checked to
// be a certificate chain (each signed by the next).
func (c *Client) Get(ctx context.Context, id string) (*EnrollmentStatus, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+EnrollmentsPath+"/"+url.PathEscape(id), nil)
	if err != nil {
		return nil, err
	}
	var st EnrollmentStatus
	if err := c.do(req, http.StatusOK, &st.EnrollmentResponse); err != nil {
		return nil, err
	}
	if st.State == StateIssued {
		chain, err := pki.ParseCertificatesPEM([]byte(st.CertificateChain))
		if err != nil {
			return nil, fmt.Errorf("ca: issued enrollment's chain: %w", err)
		}
		if err := checkChain(chain); err != nil {
			return nil, err
		}
		st.Chain = chain
	}
	return &st, nil
}

// Wait polls the enrollment every poll (default 2 s) until it is decided or
// ctx ends. It returns the chain once issued; a rejection is an error
// wrapping ErrRejected with the administrator's reason.
func (c *Client) Wait(ctx context.Context, id string, poll time.Duration) ([]*x509.Certificate, error) {
	if poll <= 0 {
		poll = 2 * time.Second
	}
	t := time.NewTicker(poll)
	defer t.Stop()
	for {
		st, err := c.Get(ctx, id)
		var ae *APIError
		switch {
		case errors.As(err, &ae) && (ae.StatusCode == http.StatusServiceUnavailable || ae.StatusCode == http.StatusTooManyRequests):
			// busy: poll again
		case err != nil:
			return nil, err
		case st.State == StateIssued:
			return st.Chain, nil
		case st.State == StateRejected:
			return nil, fmt.Errorf("%w: %s", ErrRejected, st.Reason)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ca: enrollment %s still pending: %w", id, ctx.Err())
		case <-t.C:
		}
	}
}

func (c *Client) do(req *http.Request, want int, v any) error {
	req.Header.Set("Accept", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("ca: read answer: %w", err)
	}
	if resp.StatusCode != want {
		ae := &APIError{StatusCode: resp.StatusCode}
		if json.Unmarshal(body, &ae.ErrorResponse) != nil || ae.Code == "" {
			ae.Code = "http_" + resp.Status
			ae.Message = truncate(strings.TrimSpace(string(body)))
		}
		return ae
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("ca: enrollment API answer: %w", err)
	}
	return nil
}

// checkChain checks that each certificate is signed by the next one.
func checkChain(chain []*x509.Certificate) error {
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return fmt.Errorf("ca: certificate %d of the chain is not signed by the next: %w", i, err)
		}
	}
	return nil
}
