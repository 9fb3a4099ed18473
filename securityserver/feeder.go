package securityserver

import (
	"context"
	"time"

	"github.com/passerelle/passerelle/hashregistry/client"
	"github.com/passerelle/passerelle/securityserver/messagelog"
	"github.com/passerelle/passerelle/timestamp"
)

// The message log is the durable outbox of every message hash: a record is
// committed (fsynced) before its message is forwarded or returned, and stays
// in the log's pending index until both its timestamp and its registry
// receipt are attached. The timestamp batcher and the registry outbox are
// therefore fed off the hot path, in batches: one fsync per message instead
// of three. Whatever a crash leaves unfed is fed again from the pending index
// at start (refeedPending).

// feedQueue bounds the hashes waiting to be handed over; a full queue slows
// the exchanges down (back-pressure) rather than dropping anything.
const feedQueue = 1 << 16

// feedBatch bounds one hand-over.
const feedBatch = 1024

// feedLinger is how long the feeder waits after a first hash for others to
// join its batch. Every hand-over costs a commit in the batcher and one in
// the outbox, and every outbox batch a registry round trip with a signed
// checkpoint to verify: at a few hundred messages a second, waiting a little
// turns hundreds of small batches into a few large ones. Nothing waits for
// the feeder but the evidence (the exchange is logged before it is fed).
const feedLinger = 50 * time.Millisecond

type feedItem struct {
	hash messagelog.Hash
	kind messagelog.Kind
}

// feed queues a logged message's hash for the batcher and the outbox.
func (s *Server) feed(ctx context.Context, h messagelog.Hash, k messagelog.Kind) error {
	select {
	case s.feedCh <- feedItem{h, k}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runFeeder hands queued hashes to the batcher and the outbox in batches
// until ctx ends, then hands over what is still queued.
func (s *Server) runFeeder(ctx context.Context) error {
	batch := make([]feedItem, 0, feedBatch)
	linger := time.NewTimer(feedLinger)
	linger.Stop()
	for {
		select {
		case it := <-s.feedCh:
			batch = append(batch[:0], it)
		case <-ctx.Done():
			s.drainFeed(batch[:0])
			return nil
		}
		linger.Reset(feedLinger)
	fill:
		for len(batch) < feedBatch {
			select {
			case it := <-s.feedCh:
				batch = append(batch, it)
			case <-linger.C:
				break fill
			case <-ctx.Done():
				linger.Stop()
				s.drainFeed(batch)
				return nil
			}
		}
		linger.Stop()
		s.handOver(ctx, batch)
	}
}

func (s *Server) drainFeed(batch []feedItem) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for {
		select {
		case it := <-s.feedCh:
			batch = append(batch, it)
			if len(batch) < feedBatch {
				continue
			}
		default:
		}
		if len(batch) == 0 {
			return
		}
		s.handOver(ctx, batch)
		batch = batch[:0]
	}
}

// handOver writes one batch to the batcher and the outbox (one commit each),
// retrying while ctx lasts; what it cannot hand over stays pending in the
// message log and is fed again at the next start.
func (s *Server) handOver(ctx context.Context, batch []feedItem) {
	hs := make([]timestamp.Hash, len(batch))
	items := make([]client.Item, len(batch))
	for i, it := range batch {
		hs[i] = timestamp.Hash(it.hash)
		items[i] = registryItem(it.hash, it.kind)
	}
	for attempt, wait := 0, 100*time.Millisecond; ; attempt++ {
		err := s.batcher.AddMany(ctx, hs)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			s.log.Error("message hashes left for the next start: timestamp queue unavailable", "count", len(hs), "err", err)
			return
		}
		s.log.Error("timestamp queue refused message hashes; retrying", "count", len(hs), "err", err)
		time.Sleep(wait)
		wait = min(2*wait, 5*time.Second)
	}
	for wait := 100 * time.Millisecond; ; {
		err := s.outbox.Submit(ctx, items)
		if err == nil {
			return
		}
		if ctx.Err() != nil {
			s.log.Error("message hashes left for the next start: registry outbox unavailable", "count", len(items), "err", err)
			return
		}
		s.log.Error("registry outbox refused message hashes; retrying", "count", len(items), "err", err)
		time.Sleep(wait)
		wait = min(2*wait, 5*time.Second)
	}
}
