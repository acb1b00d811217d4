package coordinator

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// checkPeerCache fails t unless every cached peer record equals its stored
// record and every stored record is cached.
func checkPeerCache(t *testing.T, ps *peerStore) {
	t.Helper()
	var stored []*pb.Peer
	if err := ps.store.View(func(tx *Tx) (err error) { stored, err = tx.Peers(); return err }); err != nil {
		t.Fatal(err)
	}
	ps.registry.mu.RLock()
	defer ps.registry.mu.RUnlock()
	if len(stored) != len(ps.registry.peers) {
		t.Errorf("%d peers stored, %d cached", len(stored), len(ps.registry.peers))
	}
	for _, rec := range stored {
		e := ps.registry.peers[peer.ID(rec.GetId())]
		if e == nil {
			t.Errorf("peer %s stored, not cached", peer.ID(rec.GetId()))
		} else if !proto.Equal(e.rec, rec) {
			t.Errorf("peer %s: cached %v, stored %v", peer.ID(rec.GetId()), e.rec, rec)
		}
	}
}

// conflictingStore is a real Badger store whose next n transactions lose
// a write conflict to another transaction rewriting the peer record id
// (unchanged) just before they commit.
func conflictingStore(t *testing.T) (st *Store, conflict func(id peer.ID, n int) *int) {
	t.Helper()
	st, err := OpenStore(filepath.Join(t.TempDir(), "db"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, func(id peer.ID, n int) *int {
		attempts := new(int)
		st.beforeCommit = func() {
			*attempts++
			if n == 0 {
				return
			}
			n--
			err := st.kv.update(func(kv kvTxn) error {
				tx := &Tx{kv: kv}
				rec, err := tx.Peer(id)
				if err != nil || rec == nil {
					return err
				}
				return tx.PutPeer(rec)
			}, nil)
			if err != nil {
				t.Error(err)
			}
		}
		return attempts
	}
}

func TestPeerCacheFollowsCommitsOnly(t *testing.T) {
	st, conflict := conflictingStore(t)
	ps, err := newPeerStore(st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	rec := fakePeer(t, 0, "user:root", now)
	id := peer.ID(rec.GetId())
	if err := ps.put(rec); err != nil {
		t.Fatal(err)
	}
	rename := func(name string) func(*pb.Peer) error {
		return func(rec *pb.Peer) error { rec.Settings.Name = name; return nil }
	}

	// One conflict: the change is retried, committed, then cached.
	attempts := conflict(id, 1)
	if _, err := ps.modify(id, rename("retried")); err != nil {
		t.Fatal(err)
	}
	if *attempts != 2 {
		t.Fatalf("%d attempts, want 2 (one conflict, one commit)", *attempts)
	}
	checkPeerCache(t, ps)
	if got, _ := ps.get(id); got.GetSettings().GetName() != "retried" {
		t.Fatalf("name %q after the retried change", got.GetSettings().GetName())
	}

	// Conflicts past the retry bound: nothing committed, nothing cached.
	attempts = conflict(id, maxTxnRetries+1)
	if _, err := ps.modify(id, rename("lost")); err == nil {
		t.Fatal("a change that never committed reported success")
	}
	if *attempts != maxTxnRetries+1 {
		t.Fatalf("%d attempts, want %d", *attempts, maxTxnRetries+1)
	}
	checkPeerCache(t, ps)
	if got, _ := ps.get(id); got.GetSettings().GetName() != "retried" {
		t.Fatalf("name %q after a change that failed", got.GetSettings().GetName())
	}
	conflict(id, 0)
}

// A session that ends while its record's write keeps conflicting must not
// leave the cache ahead of the store (peerGone once wrote the cache from
// inside the transaction).
func TestPeerGoneCacheMatchesStoreAfterConflicts(t *testing.T) {
	st, conflict := conflictingStore(t)
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	rec := fakePeer(t, 0, "user:root", now.Add(-time.Hour))
	id := peer.ID(rec.GetId())
	if err := st.Update(func(tx *Tx) error { return tx.PutPeer(rec) }); err != nil {
		t.Fatal(err)
	}
	svc := serviceOver(t, st, now)
	for _, n := range []int{1, maxTxnRetries + 1} {
		t.Run(fmt.Sprintf("conflicts=%d", n), func(t *testing.T) {
			svc.clock.(*mesh.ManualClock).Advance(time.Minute) // a contact the store does not have yet
			sess := &peerSession{id: id}
			sess.closeOnce.Do(func() {}) // no stream to reset
			svc.peers.attach(id, sess)
			attempts := conflict(id, n)
			svc.peerGone(sess)
			conflict(id, 0)
			if *attempts < 2 {
				t.Fatalf("%d attempts: no conflict was made", *attempts)
			}
			checkPeerCache(t, svc.peers)
		})
	}
}

// Concurrent changes of one peer, each retried on conflict with the
// others: every change lands once and the cache ends equal to the store.
func TestPeerCacheConcurrentChanges(t *testing.T) {
	st, err := OpenStore(filepath.Join(t.TempDir(), "db"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	ps, err := newPeerStore(st, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	var ids []peer.ID
	for i := range 2 {
		rec := fakePeer(t, i, "user:root", now)
		rec.LastAccessUnix = 0
		ids = append(ids, peer.ID(rec.GetId()))
		if err := ps.put(rec); err != nil {
			t.Fatal(err)
		}
	}
	const writers, each = 4, 10
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for range each {
				id := ids[w%len(ids)]
				if _, err := ps.modify(id, func(rec *pb.Peer) error { rec.LastAccessUnix++; return nil }); err != nil {
					t.Error(err)
				}
				// A writer outside the peer store (another record in the
				// same transaction's key range) makes real conflicts.
				if err := st.Update(func(tx *Tx) error {
					rec, err := tx.Peer(id)
					if err != nil || rec == nil {
						return err
					}
					return tx.PutPeer(rec)
				}); err != nil && !errors.Is(err, ErrStoreConflict) {
					// The disturbance may lose past Update's retries
					// (three writers on one key, none waiting for the
					// others); the peer store's own changes may not.
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	checkPeerCache(t, ps)
	for _, id := range ids {
		if got, _ := ps.get(id); got.GetLastAccessUnix() != int64(writers/len(ids)*each) {
			t.Errorf("peer %s: %d changes landed, want %d", id, got.GetLastAccessUnix(), writers/len(ids)*each)
		}
	}
}
