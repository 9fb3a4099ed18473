package evidence

import (
	"archive/zip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/passerelle/passerelle/pki"
	"github.com/passerelle/passerelle/securityserver/messagelog"
	"github.com/passerelle/passerelle/timestamp"
)

// Source is the part of a message log an export reads. *messagelog.Log
// implements it; its methods are safe for concurrent use and return errors
// wrapping messagelog.ErrNotFound, ErrNoBody or ErrStorage.
type Source interface {
	ByMessageID(ctx context.Context, messageID string, client pki.ClientID) ([]*messagelog.Record, error)
	Get(ctx context.Context, id uint64) (*messagelog.Record, error)
	OpenBody(ctx context.Context, r *messagelog.Record) (io.ReadCloser, error)
}

// Exchange is what a bundle is made of: the exporting server's owner and
// one exchange's records from its log.
type Exchange struct {
	Owner    pki.ClientID       // the exporting server's owner member
	Request  *messagelog.Record // required, with Signed loaded (Source.Get)
	Response *messagelog.Record // nil when none was logged
}

// Export selects from src the exchange with messageID (narrowed to client
// when it is not zero): the request record and the response that answers it.
// ErrNotFound when there is none, ErrAmbiguous when several requests (with
// different hashes) carry the id.
func Export(ctx context.Context, src Source, owner pki.ClientID, messageID string, client pki.ClientID) (*Exchange, error) {
	recs, err := src.ByMessageID(ctx, messageID, client)
	if err != nil {
		if errors.Is(err, messagelog.ErrNotFound) {
			return nil, ErrNotFound
		}
		return nil, err
	}
	var req *messagelog.Record
	for _, r := range recs {
		if r.Kind != messagelog.KindRequest {
			continue
		}
		switch {
		case req == nil:
			req = r
		case r.Hash != req.Hash:
			return nil, fmt.Errorf("%w: %q (clients %s and %s)", ErrAmbiguous, messageID, req.Client, r.Client)
		}
	}
	if req == nil {
		return nil, ErrNotFound
	}
	var resp *messagelog.Record
	for _, r := range recs {
		if r.Kind == messagelog.KindResponse && r.RequestHash != nil && *r.RequestHash == req.Hash {
			if resp == nil || (resp.Side != req.Side && r.Side == req.Side) {
				resp = r
			}
		}
	}
	ex := &Exchange{Owner: owner}
	if ex.Request, err = src.Get(ctx, req.ID); err != nil {
		return nil, err
	}
	if resp != nil {
		if ex.Response, err = src.Get(ctx, resp.ID); err != nil {
			return nil, err
		}
	}
	return ex, nil
}

// Write streams ex as a bundle to w: each message's files, then
// manifest.json. Bodies are read through bodies (a Source) and never held
// in memory. now is the export time written in the manifest.
func Write(ctx context.Context, w io.Writer, bodies Source, ex *Exchange, now time.Time) error {
	if ex == nil || ex.Request == nil {
		return errors.New("evidence: no request to export")
	}
	rq := ex.Request
	m := &Manifest{
		Version:        FormatVersion,
		MessageID:      rq.MessageID,
		Client:         rq.Client.String(),
		Service:        rq.Service.String(),
		ServiceVersion: rq.Service.Version,
		Protocol:       rq.Protocol.String(),
		Exporter:       Exporter{Owner: ex.Owner.String(), Side: rq.Side.String()},
		ExportedAt:     now.UTC(),
	}
	zw := zip.NewWriter(w)
	for _, msg := range []struct {
		name string
		rec  *messagelog.Record
	}{{Request, ex.Request}, {Response, ex.Response}} {
		if msg.rec == nil {
			continue
		}
		if err := writeMessage(ctx, zw, m, bodies, msg.name, msg.rec); err != nil {
			return err
		}
	}
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	fw, err := zw.CreateHeader(&zip.FileHeader{Name: ManifestName, Method: zip.Deflate, Modified: m.ExportedAt})
	if err != nil {
		return err
	}
	if _, err := fw.Write(append(data, '\n')); err != nil {
		return err
	}
	return zw.Close()
}

func writeMessage(ctx context.Context, zw *zip.Writer, m *Manifest, bodies Source, message string, r *messagelog.Record) error {
	if len(r.Signed) == 0 {
		return fmt.Errorf("evidence: the %s record %d has no signed message loaded", message, r.ID)
	}
	mi := MessageInfo{
		Message: message, Direction: r.Direction.String(), Time: r.Time.UTC(), Hash: r.Hash.String(),
		Status: r.Status, BodyLength: r.BodyLen, BodyMode: "full",
	}
	if r.BodyMode == messagelog.BodyMetadataOnly {
		mi.BodyMode = "metadata"
	}
	if len(r.BodyDigest) > 0 {
		mi.BodySHA256 = hex.EncodeToString(r.BodyDigest)
	}
	m.Messages = append(m.Messages, mi)

	add := func(kind string, data []byte) error {
		return addFile(zw, m, message, kind, r.Time, func(w io.Writer) error {
			_, err := w.Write(data)
			return err
		})
	}
	if err := add("signature", r.Signed); err != nil {
		return err
	}
	if r.BodyStorage != messagelog.StoredNone {
		err := addFile(zw, m, message, "body", r.Time, func(w io.Writer) error {
			rc, err := bodies.OpenBody(ctx, r)
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(w, rc)
			return err
		})
		if err != nil {
			return fmt.Errorf("evidence: %s body: %w", message, err)
		}
	}
	if len(r.SignerChain) > 0 {
		chain := make([]byte, 0, 1024*len(r.SignerChain))
		for _, der := range r.SignerChain {
			chain = append(chain, pemBlock("CERTIFICATE", der)...)
		}
		if err := add("signer_chain", chain); err != nil {
			return err
		}
	}
	if len(r.OCSP) > 0 {
		if err := add("ocsp", r.OCSP); err != nil {
			return err
		}
	}
	if ts := r.Timestamp; ts != nil {
		if err := add(string(RoleTimestampToken), ts.Token); err != nil {
			return err
		}
		path, err := batchPathText(r.Hash, ts)
		if err != nil {
			return err
		}
		if err := add(string(RoleTimestampPath), path); err != nil {
			return err
		}
	}
	if rc := r.Receipt; rc != nil {
		if err := add(string(RoleRegistryProof), rc.Proof); err != nil {
			return err
		}
	}
	return nil
}

// addFile writes one file with fill and lists it in m with its size and
// SHA-256.
func addFile(zw *zip.Writer, m *Manifest, message, kind string, mod time.Time, fill func(io.Writer) error) error {
	role := roleFor(message, kind)
	name := fileName(m.Protocol, message, role)
	fw, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: mod.UTC()})
	if err != nil {
		return err
	}
	h := sha256.New()
	cw := &countWriter{w: io.MultiWriter(fw, h)}
	if err := fill(cw); err != nil {
		return err
	}
	m.Files = append(m.Files, File{Name: name, Role: role, Message: message, Size: cw.n, SHA256: hex.EncodeToString(h.Sum(nil))})
	return nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// batchPathText is the text form (timestamp.BatchPath) of a stored
// timestamp's path.
func batchPathText(h messagelog.Hash, ts *messagelog.Timestamp) ([]byte, error) {
	p := timestamp.BatchPath{Index: int64(ts.Index), Size: int64(ts.BatchSize), Proof: make([]timestamp.Hash, len(ts.Path))}
	for i, b := range ts.Path {
		if len(b) != len(p.Proof[i]) {
			return nil, fmt.Errorf("evidence: timestamp path of %s: hash %d has %d bytes", h, i, len(b))
		}
		copy(p.Proof[i][:], b)
	}
	return p.MarshalText()
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}
