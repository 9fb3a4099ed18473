package securityserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// AdminClient calls a security server's admin API (what `passerelle admin`
// uses). Safe for concurrent use.
type AdminClient struct {
	// BaseURL is the admin listener, e.g. http://127.0.0.1:4000.
	BaseURL string
	// Token is the admin bearer token (read from the server's adminTokenFile).
	Token string
	// HTTP is the client used (nil: one with a 30 s timeout).
	HTTP *http.Client
}

// NewAdminClient reads the token from tokenFile (mode 0600, as the server
// requires) and returns a client for the admin API at baseURL.
func NewAdminClient(baseURL, tokenFile string) (*AdminClient, error) {
	tok, err := loadAdminToken(tokenFile)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	u, err := url.Parse(baseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("admin URL %q: want http(s)://host:port", baseURL)
	}
	return &AdminClient{BaseURL: strings.TrimSuffix(baseURL, "/"), Token: string(tok)}, nil
}

// AdminError is an error answer of the admin API.
type AdminError struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"error"`
	Detail  string `json:"detail"`
}

func (e *AdminError) Error() string {
	return fmt.Sprintf("admin API: %d %s: %s", e.Status, e.Code, e.Message)
}

// Is lets errors.Is(err, ErrNotFound) and ErrExists match API answers.
func (e *AdminError) Is(target error) bool {
	return (target == ErrNotFound && e.Status == http.StatusNotFound) ||
		(target == ErrExists && e.Status == http.StatusConflict) ||
		(target == ErrConfig && e.Status == http.StatusBadRequest)
}

// seg percent-encodes an identifier as one path segment.
func seg(id string) string { return url.PathEscape(id) }

func (c *AdminClient) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.BaseURL+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	req.Header.Set("Accept", "application/json")
	if in != nil {
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
	}
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 400 {
		e := &AdminError{Status: resp.StatusCode}
		if json.Unmarshal(data, e) != nil || e.Code == "" {
			e.Code, e.Message = http.StatusText(resp.StatusCode), strings.TrimSpace(string(data))
		}
		return e
	}
	if out != nil && len(data) > 0 {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("admin API %s %s: %w", method, path, err)
		}
	}
	return nil
}

// all reads every page of a list.
func all[T any](ctx context.Context, c *AdminClient, path string) ([]T, error) {
	var out []T
	for page := 1; ; page++ {
		var items []T
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		if err := c.do(ctx, http.MethodGet, fmt.Sprintf("%s%spage=%d&elementsParPage=%d", path, sep, page, maxElementsPerPage), nil, &items); err != nil {
			return nil, err
		}
		out = append(out, items...)
		if len(items) < maxElementsPerPage {
			return out, nil
		}
	}
}

// Clients lists the client subsystems in effect.
func (c *AdminClient) Clients(ctx context.Context) ([]ClientConfig, error) {
	return all[ClientConfig](ctx, c, "/api/v1/clients")
}

// Client shows one client subsystem.
func (c *AdminClient) Client(ctx context.Context, id string) (*ClientConfig, error) {
	var out ClientConfig
	return &out, c.do(ctx, http.MethodGet, "/api/v1/clients/"+seg(id), nil, &out)
}

// AddClient adds a client subsystem.
func (c *AdminClient) AddClient(ctx context.Context, cl ClientConfig) error {
	return c.do(ctx, http.MethodPost, "/api/v1/clients", cl, nil)
}

// UpdateClient replaces a client subsystem's configuration.
func (c *AdminClient) UpdateClient(ctx context.Context, cl ClientConfig) error {
	return c.do(ctx, http.MethodPut, "/api/v1/clients/"+seg(cl.ID), cl, nil)
}

// RemoveClient removes a client subsystem.
func (c *AdminClient) RemoveClient(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/clients/"+seg(id), nil, nil)
}

// Services lists the services in effect.
func (c *AdminClient) Services(ctx context.Context) ([]ServiceConfig, error) {
	return all[ServiceConfig](ctx, c, "/api/v1/services")
}

// Service shows one service.
func (c *AdminClient) Service(ctx context.Context, id string) (*ServiceConfig, error) {
	var out ServiceConfig
	return &out, c.do(ctx, http.MethodGet, "/api/v1/services/"+seg(id), nil, &out)
}

// AddService adds a service.
func (c *AdminClient) AddService(ctx context.Context, s ServiceConfig) error {
	return c.do(ctx, http.MethodPost, "/api/v1/services", s, nil)
}

// UpdateService replaces a service's configuration (grants included).
func (c *AdminClient) UpdateService(ctx context.Context, s ServiceConfig) error {
	return c.do(ctx, http.MethodPut, "/api/v1/services/"+seg(s.ID), s, nil)
}

// RemoveService removes a service.
func (c *AdminClient) RemoveService(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/services/"+seg(id), nil, nil)
}

// Grants lists a service's grants (Allow entries as rules without methods
// or paths, then the rules).
func (c *AdminClient) Grants(ctx context.Context, service string) ([]AccessRule, error) {
	return all[AccessRule](ctx, c, "/api/v1/services/"+seg(service)+"/grants")
}

// Grant gives a client access to a service: everything when the rule has
// no methods and no paths, else those methods on those paths.
func (c *AdminClient) Grant(ctx context.Context, service string, rule AccessRule) error {
	return c.do(ctx, http.MethodPost, "/api/v1/services/"+seg(service)+"/grants", rule, nil)
}

// Revoke removes every grant of client on service.
func (c *AdminClient) Revoke(ctx context.Context, service, client string) error {
	return c.do(ctx, http.MethodDelete, "/api/v1/services/"+seg(service)+"/grants/"+seg(client), nil, nil)
}

// Keys reports the server's certificates and OCSP responses.
func (c *AdminClient) Keys(ctx context.Context) ([]KeyStatus, error) {
	return all[KeyStatus](ctx, c, "/api/v1/keys")
}

// Changes returns the audit record of changes, oldest first.
func (c *AdminClient) Changes(ctx context.Context) ([]AuditRecord, error) {
	return all[AuditRecord](ctx, c, "/api/v1/changes")
}
