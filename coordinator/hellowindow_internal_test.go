package coordinator

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// A passive peer's hello (woken, it says hello again) writes its record and
// starts its session: a reader between the two saw it offline, neither
// passive as before nor online as after, and a technician's jump then was
// refused peer_offline (found by the wake helper's probe, session 29:
// during 334 of 1,411 hellos at load 9). The registry now takes both in
// one step (registry.putAttach). Reader and hello run side by side on a
// real Service over Badger; the reader looks as often as it can.
func TestHelloNeverShowsThePeerOffline(t *testing.T) {
	st, err := OpenStore(filepath.Join(t.TempDir(), "db"), StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2026, 12, 4, 19, 0, 0, 0, time.UTC)
	p := fakePeer(t, 0, "user:root", now)
	id := peer.ID(p.GetId())
	mustUpdate(t, st, func(tx *Tx) error { return tx.PutPeer(p) })
	svc := serviceOver(t, st, now)
	hello := &pb.PeerHello{Info: p.GetInfo()}
	const hellos = 300
	offline, looks := 0, 0
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; i < hellos && time.Now().Before(deadline); i++ {
		if sess := svc.peers.session(id); sess != nil {
			svc.peers.detach(id, sess, now)
		}
		if _, err := svc.peers.modify(id, func(rec *pb.Peer) error { rec.PassiveUnix = now.Unix(); return nil }); err != nil {
			t.Fatal(err)
		}
		if v, err := svc.resolvePeer(rootCaller, id.String()); err != nil || v.GetStatus() != StatusPassive {
			t.Fatalf("before hello %d: %v, %v; want passive", i, v.GetStatus(), err)
		}
		done := make(chan error, 1)
		go func() {
			_, _, err := svc.registerPeer(id, hello, "127.0.0.1", now, newPeerSession(id, nil))
			done <- err
		}()
		registered := false
		for !registered {
			select {
			case err := <-done:
				if err != nil {
					t.Fatal(err)
				}
				registered = true
			default:
			}
			v, err := svc.resolvePeer(rootCaller, id.String())
			if err != nil {
				t.Fatal(err)
			}
			looks++
			if v.GetStatus() == StatusOffline {
				offline++
				break
			}
		}
		if !registered {
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		}
		if v, _ := svc.resolvePeer(rootCaller, id.String()); v.GetStatus() != StatusOnline {
			t.Fatalf("after hello %d: %v, want online", i, v.GetStatus())
		}
	}
	if offline > 0 {
		t.Fatalf("a reader saw the peer offline during %d hellos (%d looks)", offline, looks)
	}
	t.Logf("%d looks during the hellos, none offline", looks)
}
