package coordinator

import (
	"crypto/rand"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/coordinator/etcdtest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// siteMembers runs a Service per instance name over one etcd prefix, on
// the clock's time now, after setup wrote what they load.
func siteMembers(t *testing.T, now time.Time, setup func(*Store), names ...string) ([]*Service, []*Store) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	prefix := "/jumpmesh/" + t.Name() + "/"
	var svcs []*Service
	var stores []*Store
	for _, name := range names {
		cfg := testEtcdConfig(srv, prefix)
		cfg.Instance = name
		st, err := OpenEtcdStore(cfg)
		if err != nil {
			t.Fatal(err)
		}
		st.instance = name // as openSiteStore does
		t.Cleanup(func() { st.Close() })
		stores = append(stores, st)
	}
	if setup != nil {
		setup(stores[0])
	}
	for _, st := range stores {
		svcs = append(svcs, serviceOver(t, st, now))
	}
	return svcs, stores
}

func newPeerID(t *testing.T) peer.ID {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := peer.IDFromPrivateKey(key)
	return id
}

// queued is what waits in a session's queue (its writer never starts:
// the session's welcome is not out).
func queued(sess *peerSession) []*pb.PeerDown {
	sess.mu.Lock()
	defer sess.mu.Unlock()
	return slices.Clone(sess.queue)
}

// waitFor polls cond every millisecond (the delay is measured) until it
// holds, and returns how long that took.
func waitFor(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	deadline := start.Add(10 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after 10s waiting for %s", what)
		}
		<-tick.C
	}
	return time.Since(start)
}

// Two coordinators of a site on one etcd, a and b; a peer held by b.
// Settings changed through a reach it (b's cache too); a technician
// removed through a is refused by b at once (b reads the store at every
// request) and the grants b's peer holds are revoked by b once the
// watch brings a's revocation; a's revocation of that peer's grants
// reaches it too, and one for a peer b does not hold does not. b's own
// revocation, back from the watch, is not applied twice; records under se/
// that do not decode or revoke nothing change nothing. The delays are
// logged (docs/etcd.md).
func TestRevocationReachesPeersOfOtherCoordinators(t *testing.T) {
	now := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	rec, otherRec := fakePeer(t, 1, "user:ann", now), fakePeer(t, 2, "user:ann", now)
	svcs, stores := siteMembers(t, now, func(st *Store) {
		mustUpdate(t, st, func(tx *Tx) error {
			if err := tx.PutPeer(rec); err != nil {
				return err
			}
			return tx.PutPeer(otherRec)
		})
	}, "a", "b")
	a, b := svcs[0], svcs[1]
	p, other := peer.ID(rec.GetId()), peer.ID(otherRec.GetId())
	sess := newPeerSession(p, nil)
	if b.peers.attach(p, sess); b.peers.session(p) != sess {
		t.Fatal("the peer's session not attached on b")
	}
	// Detached at the end: presence's wait for the peer's addresses
	// (presence.go) then ends.
	t.Cleanup(func() { b.peers.detach(p, sess, now) })
	tech := newPeerID(t)
	mustUpdate(t, stores[0], func(tx *Tx) error {
		if err := tx.PutUser(&pb.User{Name: "tom", Role: pb.Role_ROLE_TECHNICIAN}); err != nil {
			return err
		}
		return tx.BindKey(tech, "tom")
	})
	if _, err := b.authenticate(tech); err != nil {
		t.Fatal(err)
	}
	b.settings() // cached, as a peer's stream would have it

	// Settings set through a (as settingsSet does).
	mustUpdate(t, stores[0], func(tx *Tx) error {
		st, err := tx.Settings()
		if err != nil {
			return err
		}
		st.ConnectionRate = 7
		return tx.PutSettings(st)
	})
	a.reloadSettings()
	a.pushSettings()
	d := waitFor(t, "b's cache and its peer's update", func() bool {
		q := queued(sess)
		return b.settings().GetConnectionRate() == 7 && len(q) == 1 && q[0] == nil
	})
	t.Logf("settings set through a: b's peer's update queued %s after a's commit", d.Round(100*time.Microsecond))

	// tom removed through a (as userRemove does: the record, then the
	// revocation of its keys).
	mustUpdate(t, stores[0], func(tx *Tx) error {
		if err := tx.UnbindKey(tech); err != nil {
			return err
		}
		return tx.DeleteUser("tom")
	})
	start := time.Now()
	a.revokeTechnicians([][]byte{[]byte(tech)}, "user tom removed")
	// The attack: tom asks b at once, before the watch could bring
	// anything. b reads the store: tom is unknown.
	_, err := b.authenticate(tech)
	if catalog.CodeOf(err) != catalog.CodeUnknownTechnician {
		t.Fatalf("tom on b right after his removal through a: %v, want unknown_technician", err)
	}
	waitFor(t, "the revocation on b's peer", func() bool {
		q := queued(sess)
		return len(q) == 2 && slices.ContainsFunc(q[1].GetRevoke().GetTechnicians(), func(k []byte) bool { return peer.ID(k) == tech })
	})
	d = time.Since(start)
	if r := queued(sess)[1].GetRevoke(); r.GetIssuedThroughUnix() < now.Unix() || r.GetReason() != "user tom removed" {
		t.Fatalf("revocation on b: %v", r)
	}
	t.Logf("tom removed through a: the revocation queued to b's peer %s after a's commit", d.Round(100*time.Microsecond))

	// The peer's grants revoked through a (its group changed), and one
	// for a peer b does not hold.
	a.revokePeers([]peer.ID{other}, "not b's")
	a.revokePeers([]peer.ID{p}, "the peer's group or policies changed")
	waitFor(t, "every grant of b's peer revoked", func() bool {
		q := queued(sess)
		return len(q) == 3 && q[2].GetRevoke().GetAll()
	})
	// A revocation published by b comes back to b's own watch: b applies
	// nothing of its own (one revocation, not two).
	b.revokePeers([]peer.ID{p}, "b's own")
	waitFor(t, "b's own revocation queued once", func() bool { return len(queued(sess)) >= 4 })
	a.revokePeers([]peer.ID{p}, "a marker after b's own")
	waitFor(t, "a's marker", func() bool { q := queued(sess); return q[len(q)-1].GetRevoke().GetReason() == "a marker after b's own" })
	if q := queued(sess); len(q) != 5 {
		t.Fatalf("%d messages queued to b's peer, want 5 (b's own revocation once)", len(q))
	}
	// Records under se/ that do not decode, or revoke nothing, change
	// nothing; the next real one still applies.
	mustUpdate(t, stores[0], func(tx *Tx) error {
		if err := tx.kv.set([]byte(siteEventPrefix+"zz"), []byte("not json")); err != nil {
			return err
		}
		return tx.kv.set([]byte(siteEventPrefix+"yy"), []byte(`{"revoke":{"reason":"nothing"}}`))
	})
	a.revokePeers([]peer.ID{p}, "after the garbage")
	waitFor(t, "the revocation after the garbage", func() bool {
		q := queued(sess)
		return q[len(q)-1].GetRevoke().GetReason() == "after the garbage"
	})
	if q := queued(sess); len(q) != 6 {
		t.Fatalf("%d messages queued to b's peer, want 6 (nothing for the garbage)", len(q))
	}
}
