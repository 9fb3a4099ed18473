package securityserver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"

	"github.com/passerelle/passerelle/pki"
)

// tlsVerifyError marks a TLS handshake refused because of the peer's
// certificate, so that callers can tell it from a network failure.
type tlsVerifyError struct{ err error }

func (e *tlsVerifyError) Error() string { return "peer certificate refused: " + e.err.Error() }
func (e *tlsVerifyError) Unwrap() error { return e.err }

// providerServerTLS is the provider side's mutual TLS: TLS 1.2 at least (1.3
// preferred by Go), our auth certificate with its OCSP staple, and a client
// certificate that chains to the directory's roots with the auth usage and
// belongs to a registered security server. Whether that server may speak for
// the request's client, and its OCSP status, are checked per request.
func (s *Server) providerServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAnyClientCert,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			c := s.tlsCertificate()
			return &c, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := s.verifyPeerChain(cs.PeerCertificates); err != nil {
				return &tlsVerifyError{err}
			}
			return nil
		},
	}
}

// providerClientTLS is the consumer side's mutual TLS towards providers.
// Go's host-name check is replaced by the directory: the peer must chain to
// the directory's roots with the auth usage, present a good, fresh stapled
// OCSP response, and be a registered security server; dialProvider adds that
// it is the very server the caller means to reach (fingerprint).
func (s *Server) providerClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		InsecureSkipVerify: true, // replaced by VerifyConnection, which always runs
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c := s.tlsCertificate()
			return &c, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if err := s.verifyPeerChain(cs.PeerCertificates); err != nil {
				return &tlsVerifyError{err}
			}
			doc, err := s.dir.Current()
			if err != nil {
				return err
			}
			v, err := s.currentVerifier(doc)
			if err != nil {
				return err
			}
			if _, err := v.Verify(context.Background(), cs.PeerCertificates, cs.OCSPResponse, pki.UsageAuth); err != nil {
				return &tlsVerifyError{err}
			}
			return nil
		},
	}
}

// peerPinKey is the context key of the TLS certificate fingerprint the
// consumer side expects of the provider's security server it calls.
type peerPinKey struct{}

// withPeerPin asks dialProvider to accept only a peer whose certificate has
// fingerprint fp (the directory's tlsCertSha256 of the target server).
func withPeerPin(ctx context.Context, fp string) context.Context {
	return context.WithValue(ctx, peerPinKey{}, fp)
}

var errPeerNotPinned = errors.New("certificate is not the one the federation directory registers for the server called")

// dialProvider opens a connection to a provider's security server with
// providerClientTLS, and also refuses, during the handshake, a peer that is
// not the server the request's context pins (withPeerPin): another
// registered security server never sees the request. A connection is only
// reused for requests to the same address; their callers still compare the
// fingerprint with their own target.
func (s *Server) dialProvider(d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		want, _ := ctx.Value(peerPinKey{}).(string)
		if want == "" {
			return nil, &tlsVerifyError{errors.New("no expected peer certificate for " + addr)}
		}
		raw, err := d.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		conf := s.providerClientTLS()
		if host, _, err := net.SplitHostPort(addr); err == nil && net.ParseIP(host) == nil {
			conf.ServerName = host // SNI, as http.Transport would send it
		}
		verify := conf.VerifyConnection
		conf.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) > 0 && pki.Fingerprint(cs.PeerCertificates[0]) != want {
				return &tlsVerifyError{errPeerNotPinned}
			}
			return verify(cs)
		}
		c := tls.Client(raw, conf)
		if err := c.HandshakeContext(ctx); err != nil {
			raw.Close()
			return nil, err
		}
		return c, nil
	}
}

var errUnregisteredPeer = errors.New("certificate is not registered to any security server in the federation directory")

// verifyPeerChain checks a TLS peer's chain (no revocation) and that the
// directory registers its certificate for some security server.
func (s *Server) verifyPeerChain(chain []*x509.Certificate) error {
	if len(chain) == 0 {
		return errors.New("no certificate")
	}
	doc, err := s.dir.Current()
	if err != nil {
		return err
	}
	if len(doc.ServersByFingerprint(pki.Fingerprint(chain[0]))) == 0 {
		return errUnregisteredPeer
	}
	v, err := s.currentVerifier(doc)
	if err != nil {
		return err
	}
	if _, _, err := v.VerifyChain(chain, pki.UsageAuth); err != nil {
		return fmt.Errorf("certificate chain: %w", err)
	}
	return nil
}
