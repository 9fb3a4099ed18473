// Package client is the security server's side of the hash registry: a
// gRPC client (Dial → *GRPCClient) and a durable bbolt outbox (OpenOutbox →
// *Outbox) that holds message hashes until the registry has integrated
// them, through registry outages, restarts and kill -9.
//
// Submit returns once the items are on disk (concurrent Submits share one
// fsync); Run drains them in batches with retry and exponential backoff and
// hands each receipt (a c2sp.org/tlog-proof@v1 file) to the Handler so the
// message log can store it. Backlog reports how many items wait and since
// when. Delivery is at least once: an item whose Append succeeded just
// before a crash is appended again after restart (the registry then holds
// it twice; both receipts verify).
package client

import (
	"context"
	"crypto/tls"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/passerelle/passerelle/hashregistry"
	pb "github.com/passerelle/passerelle/proto/hashregistry/v1"
)

// Appender integrates a batch of submissions and returns one receipt per
// submission, in order, once they are durably committed. *GRPCClient and
// *hashregistry.Log (through LogAppender) implement it. Implementations
// must be safe for concurrent use.
type Appender interface {
	Append(ctx context.Context, subs []hashregistry.Submission) ([]hashregistry.AppendReceipt, error)
}

// GRPCClient calls a registry over gRPC with mutual TLS.
type GRPCClient struct {
	cc *grpc.ClientConn
	c  pb.HashRegistryClient
}

// Dial returns a client for the registry at target ("host:port"); tlsConf
// carries the member's client certificate and the federation roots.
func Dial(target string, tlsConf *tls.Config) (*GRPCClient, error) {
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)))
	if err != nil {
		return nil, fmt.Errorf("hashregistry client: %w", err)
	}
	return &GRPCClient{cc: cc, c: pb.NewHashRegistryClient(cc)}, nil
}

// Close closes the connection.
func (c *GRPCClient) Close() error { return c.cc.Close() }

// Registry returns the raw gRPC client for reads.
func (c *GRPCClient) Registry() pb.HashRegistryClient { return c.c }

// Append implements Appender.
func (c *GRPCClient) Append(ctx context.Context, subs []hashregistry.Submission) ([]hashregistry.AppendReceipt, error) {
	req := &pb.AppendRequest{Submissions: make([]*pb.Submission, len(subs))}
	for i, s := range subs {
		req.Submissions[i] = &pb.Submission{MessageHash: s.Hash[:], Kind: pb.Kind(s.Kind)}
	}
	resp, err := c.c.Append(ctx, req)
	if err != nil {
		return nil, err
	}
	if len(resp.GetReceipts()) != len(subs) {
		return nil, fmt.Errorf("hashregistry client: %d receipts for %d submissions", len(resp.GetReceipts()), len(subs))
	}
	out := make([]hashregistry.AppendReceipt, len(subs))
	for i, r := range resp.GetReceipts() {
		out[i] = hashregistry.AppendReceipt{Index: r.GetIndex(), Entry: r.GetEntry(), Proof: r.GetProof()}
	}
	return out, nil
}
