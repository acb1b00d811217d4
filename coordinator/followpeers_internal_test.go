package coordinator

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// What the holder of a peer pushes when another coordinator changes its
// record (follow.go), on one etcd with coordinators a and b, b holding the
// peer: its own writes push nothing; a peer set through a pushes one
// update built from the new record; records under the peer's key that do
// not decode or name another peer (even one marked deleted) push nothing;
// a technician refused a policy change through a pushes nothing; a
// removal through a is buried by b, which orders the peer to uninstall.
func TestFollowPeersPushesOnlyChanges(t *testing.T) {
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
	sess.mu.Lock()
	sess.sent = proto.CloneOf(rec.GetSettings()) // as its welcome carried them
	sess.mu.Unlock()
	rename := func(svc *Service, name string) {
		t.Helper()
		if _, err := svc.peers.modify(p, func(r *pb.Peer) error { r.Settings.Name = name; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	lastNamed := func(name string) func() bool {
		return func() bool {
			q := queued(sess)
			return len(q) > 0 && q[len(q)-1].GetUpdate().GetPeer().GetSettings().GetName() == name
		}
	}

	// b's own write (its last contact), then a marker through a: the
	// marker's update is the only one.
	if _, err := b.peers.modify(p, func(r *pb.Peer) error { r.LastSeenUnix++; return nil }); err != nil {
		t.Fatal(err)
	}
	rename(a, "m1")
	d := waitFor(t, "the update for a's change", lastNamed("m1"))
	t.Logf("a peer set through a: queued to b's peer %s after a's commit", d.Round(100*time.Microsecond))
	if q := queued(sess); len(q) != 1 {
		t.Fatalf("%d messages queued, want 1 (b's own write pushed nothing)", len(q))
	}

	// A technician may not change a peer's policies: refused through a,
	// nothing reaches b's peer.
	ann := &caller{peer: newPeerID(t), user: &pb.User{Name: "ann", Role: pb.Role_ROLE_TECHNICIAN}}
	_, err := a.peerSet(ann, &pb.PeerSetRequest{Ref: p.String(), Settings: &pb.InstallerDefaults{JumpPolicy: "always"},
		Fields: uint32(installerkey.FieldJumpPolicy)})
	if catalog.CodeOf(err) != catalog.CodePermissionDenied {
		t.Fatalf("a technician's policy change: %v, want permission_denied", err)
	}

	// Garbage under the peer's key: a record of another peer marked
	// deleted, then bytes that do not decode. Then the real record back
	// (renamed): only its update is pushed, and no order to uninstall.
	other := fakePeer(t, 2, "user:ann", now)
	other.DeletedUnix, other.DeletedBy = now.Unix(), "mallory"
	forged, _ := proto.Marshal(other)
	mustUpdate(t, stores[0], func(tx *Tx) error { return tx.kv.set([]byte(peersPrefix+string(p)), forged) })
	mustUpdate(t, stores[0], func(tx *Tx) error { return tx.kv.set([]byte(peersPrefix+string(p)), []byte("\xff\xff not a record")) })
	back := proto.CloneOf(rec)
	back.Settings.Name = "m2"
	mustUpdate(t, stores[0], func(tx *Tx) error { return tx.PutPeer(back) })
	waitFor(t, "the update for the record put back", lastNamed("m2"))
	if q := queued(sess); len(q) != 2 {
		t.Fatalf("%d messages queued, want 2 (nothing for the garbage or the refused change)", len(q))
	}

	// Removed through a, which does not hold it: b buries it and orders
	// the peer to uninstall.
	start := time.Now()
	if _, err := a.peerRemove(rootCaller, &pb.PeerRefRequest{Refs: []string{p.String()}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the order to uninstall", func() bool {
		q := queued(sess)
		return q[len(q)-1].GetUninstall().GetReason() == "deleted by root"
	})
	t.Logf("a peer removed through a: its uninstall queued by b %s after the removal returned", time.Since(start).Round(100*time.Microsecond))
	waitFor(t, "the tombstone", func() bool {
		var tomb, left *pb.Peer
		mustView(t, stores[0], func(tx *Tx) (err error) {
			if tomb, err = tx.Tombstone(p); err == nil {
				left, err = tx.Peer(p)
			}
			return err
		})
		return tomb != nil && tomb.GetDeletedBy() == "root" && left == nil
	})
}
