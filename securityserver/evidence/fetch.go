package evidence

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/passerelle/passerelle/pki"
)

// ContentType is the media type of a bundle.
const ContentType = "application/zip"

// Path is the admin API path of an exchange's bundle (the message id
// path-escaped); ?client=I/C/M[/S] narrows it.
func Path(messageID string, client pki.ClientID) string {
	p := "/api/v1/exchanges/" + url.PathEscape(messageID) + "/evidence"
	if !client.IsZero() {
		p += "?client=" + url.QueryEscape(client.String())
	}
	return p
}

// APIError is an error answer of the admin API.
type APIError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"error"`
}

func (e *APIError) Error() string {
	if e.Message == "" {
		return fmt.Sprintf("admin API: HTTP %d", e.Status)
	}
	return fmt.Sprintf("admin API: HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// Is makes errors.Is(err, ErrNotFound) true for a 404.
func (e *APIError) Is(target error) bool {
	return target == ErrNotFound && e.Status == http.StatusNotFound
}

// Fetch downloads the bundle of exchange messageID (narrowed to client when
// not zero) from the admin API at adminURL with the bearer token, and copies
// it to w. It returns the bytes written; an error answer is an *APIError.
// hc nil means http.DefaultClient.
func Fetch(ctx context.Context, hc *http.Client, adminURL, token, messageID string, client pki.ClientID, w io.Writer) (int64, error) {
	if hc == nil {
		hc = http.DefaultClient
	}
	if messageID == "" {
		return 0, errors.New("evidence: no message id")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(adminURL, "/")+Path(messageID, client), nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", ContentType)
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		e := &APIError{Status: resp.StatusCode}
		_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(e)
		return 0, e
	}
	return io.Copy(w, resp.Body)
}
