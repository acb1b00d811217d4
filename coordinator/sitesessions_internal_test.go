package coordinator

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// One jump at a time, across coordinators: the sessions a peer held by b
// reports are seen by a until they end, the peer goes offline at b, or
// b's lease ends. A session ID that looks like a path stays a name under
// the peer's prefix.
func TestSessionHoldersAcrossCoordinators(t *testing.T) {
	now := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	rec := fakePeer(t, 1, "user:ann", now)
	svcs, stores := siteMembers(t, now, func(st *Store) {
		mustUpdate(t, st, func(tx *Tx) error { return tx.PutPeer(rec) })
	}, "a", "b")
	a, b := svcs[0], svcs[1]
	p := peer.ID(rec.GetId())
	holders := func(user string) string {
		t.Helper()
		out, err := a.sessionHolders(p, user)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(out)
	}
	b.jumps.started(p, "s1", "tom", []byte{1})
	if got := holders("ann"); got != "[tom]" {
		t.Fatalf("a sees %s in session with b's peer, want [tom]", got)
	}
	if got := holders("tom"); got != "[]" {
		t.Fatalf("tom's own session counted against him on a: %s", got)
	}
	b.jumps.ended(p, "s1")
	if got := holders("ann"); got != "[]" {
		t.Fatalf("a sees %s after the session ended, want none", got)
	}
	b.jumps.started(p, "s2", "tess", []byte{2})
	b.jumps.started(p, "../../u/admin", "tess", []byte{3})
	if got := holders("ann"); got != "[tess]" {
		t.Fatalf("a sees %s, want [tess]", got)
	}
	mustView(t, stores[0], func(tx *Tx) error {
		if u, err := tx.User("admin"); err != nil || u != nil {
			return fmt.Errorf("a session ID wrote a user: %v %v", u, err)
		}
		return nil
	})
	b.jumps.peerGone(p)
	if got := holders("ann"); got != "[]" {
		t.Fatalf("a sees %s after the peer went offline at b, want none", got)
	}
	// b stops: what its lease held goes with it.
	b.jumps.started(p, "s4", "tess", []byte{4})
	if got := holders("ann"); got != "[tess]" {
		t.Fatalf("a sees %s, want [tess]", got)
	}
	if err := stores[1].Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "b's sessions gone with its lease", func() bool { return holders("ann") == "[]" })
}

func mustView(t *testing.T, st *Store, fn func(tx *Tx) error) {
	t.Helper()
	if err := st.View(fn); err != nil {
		t.Fatal(err)
	}
}
