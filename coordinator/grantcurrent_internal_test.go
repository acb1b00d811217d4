package coordinator

import (
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestGrantOnTheRecordAsItIs: on one etcd, coordinator b holds a peer and
// is held behind the store (its watches hand nothing on).
// Through a, an administrator disables the peer, or moves it to a group
// ann may not see, or removes it: a jump asked of b then is refused as the
// store's record says, not granted on b's stale copy (without the check
// in the grant's transaction b granted all three).
func TestGrantOnTheRecordAsItIs(t *testing.T) {
	ann := &caller{peer: newPeerID(t), user: &pb.User{Name: "ann", Role: pb.Role_ROLE_TECHNICIAN}}
	for _, s := range []struct {
		what   string
		change func(a *Service, p peer.ID) error
		who    *caller
		want   catalog.Code
	}{
		{"disabled through a", func(a *Service, p peer.ID) error {
			_, err := a.peers.modify(p, func(r *pb.Peer) error { r.Disabled = true; return nil })
			return err
		}, rootCaller, catalog.CodePeerDisabled},
		{"moved to another group through a", func(a *Service, p peer.ID) error {
			_, err := a.peers.modify(p, func(r *pb.Peer) error { r.Settings.Group = "user:bob"; return nil })
			return err
		}, ann, catalog.CodePeerNotFound},
		{"removed through a", func(a *Service, p peer.ID) error {
			_, err := a.peerRemove(rootCaller, &pb.PeerRefRequest{Refs: []string{p.String()}})
			return err
		}, rootCaller, catalog.CodePeerNotFound},
	} {
		t.Run(s.what, func(t *testing.T) {
			now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
			rec := fakePeer(t, 1, "user:ann", now)
			svcs, stores := siteMembers(t, now, func(st *Store) {
				mustUpdate(t, st, func(tx *Tx) error { return tx.PutPeer(rec) })
			}, "a", "b")
			a, b := svcs[0], svcs[1]
			p := peer.ID(rec.GetId())
			sess := newPeerSession(p, nil)
			b.peers.attach(p, sess)
			t.Cleanup(func() { b.peers.detach(p, sess, now) })
			jump := func(who *caller) error {
				_, err := b.jump(who, &pb.JumpRequest{Ref: p.String(), Capability: grant.Exec})
				return err
			}
			if err := jump(s.who); err != nil {
				t.Fatalf("the jump before the change: %v", err)
			}

			var release sync.Once
			held := make(chan struct{})
			hold := func() { <-held }
			stores[1].watchHold.Store(&hold)
			defer release.Do(func() { close(held) })
			if err := s.change(a, p); err != nil {
				t.Fatal(err)
			}
			err := jump(s.who)
			if got := catalog.CodeOf(err); got != s.want {
				t.Fatalf("a jump asked of b after the peer was %s (b's watch held): %v (%s), want %s", s.what, err, got, s.want)
			}
		})
	}
}
