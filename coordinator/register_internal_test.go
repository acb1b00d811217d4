package coordinator

import (
	"context"
	"crypto/rand"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/coordinator/etcdtest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestHelloWritesOnce: a hello costs at most one commit, on Badger and on
// etcd. A reconnection that changes a fact (the observed address, the
// disabled flag, a passive mark) writes the record — on etcd with the
// peer's presence in the same transaction, under the member's lease; one
// that changes nothing but the last contact writes no record (on etcd its
// presence only), keeps the contact in memory and still welcomes with it;
// the session's end then writes the contact.
func TestHelloWritesOnce(t *testing.T) {
	t.Run("badger", func(t *testing.T) {
		st, err := OpenStore(filepath.Join(t.TempDir(), "db"), StoreOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		testHelloWritesOnce(t, st, nil)
	})
	t.Run("etcd", func(t *testing.T) {
		if testing.Short() {
			t.Skip("starts etcd")
		}
		srv := etcdtest.Start(t, etcdtest.Options{})
		cfg := testEtcdConfig(srv, "/jumpmesh/hello/")
		st, err := openMember(t, cfg, "a", "")
		if err != nil {
			t.Fatal(err)
		}
		cli := rawEtcd(t, cfg)
		// revs is the mod revisions of p/<id> and o/<id>, and o/'s lease.
		revs := func(id peer.ID) (p, o, lease int64) {
			t.Helper()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			for _, k := range []string{"p/", "o/"} {
				resp, err := cli.Get(ctx, cfg.Prefix+k+string(id))
				if err != nil {
					t.Fatal(err)
				}
				if len(resp.Kvs) == 0 {
					continue
				}
				if k == "p/" {
					p = resp.Kvs[0].ModRevision
				} else {
					o, lease = resp.Kvs[0].ModRevision, resp.Kvs[0].Lease
				}
			}
			return p, o, lease
		}
		testHelloWritesOnce(t, st, revs)
	})
}

func testHelloWritesOnce(t *testing.T, st *Store, revs func(peer.ID) (p, o, lease int64)) {
	now := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	p := fakePeer(t, 0, "user:ann", now)
	p.PublicAddr = "192.0.2.7"
	id := peer.ID(p.GetId())
	mustUpdate(t, st, func(tx *Tx) error { return tx.PutPeer(p) })
	clock := mesh.NewManualClock(now)
	svc := addressedService(t, st, clock)
	var commits atomic.Int64
	st.beforeCommit = func() { commits.Add(1) }
	stored := func() *pb.Peer {
		t.Helper()
		var rec *pb.Peer
		if err := st.View(func(tx *Tx) (err error) { rec, err = tx.Peer(id); return err }); err != nil {
			t.Fatal(err)
		}
		return rec
	}
	hello := &pb.PeerHello{Info: proto.CloneOf(p.GetInfo())}
	var sess *peerSession
	// register is one hello at now; it returns the commits it made.
	register := func(observed string, h *pb.PeerHello) (*pb.Peer, int64) {
		t.Helper()
		before := commits.Load()
		next := newPeerSession(id, nil)
		rec, old, err := svc.registerPeer(id, h, observed, clock.Now(), next)
		if err != nil {
			t.Fatal(err)
		}
		if old != sess {
			t.Fatalf("registration replaced %p, want the previous session %p", old, sess)
		}
		if svc.peers.session(id) != next {
			t.Fatal("the hello's session is not the peer's session")
		}
		sess = next
		return rec, commits.Load() - before
	}
	checkFolded := func(what string) {
		t.Helper()
		if revs == nil {
			return
		}
		pr, or, lease := revs(id)
		if pr == 0 || pr != or || lease != int64(st.kv.(*etcdKV).fence.Load().lease) {
			t.Fatalf("%s: p/ at revision %d, o/ at %d under lease %x: want one transaction, o/ under the member's lease", what, pr, or, lease)
		}
	}

	// A new observed address: the record is written (with the presence).
	clock.Advance(time.Minute)
	rec, n := register("192.0.2.8", hello)
	if n != 1 || stored().GetPublicAddr() != "192.0.2.8" || stored().GetLastSeenUnix() != clock.Now().Unix() || rec.GetLastSeenUnix() != clock.Now().Unix() {
		t.Fatalf("changed address: %d commits, stored %v", n, stored())
	}
	checkFolded("changed address")

	// Nothing changed but the contact: no record written.
	written := clock.Now().Unix()
	clock.Advance(time.Minute)
	pBefore, _, _ := revsOr(revs, id)
	rec, n = register("192.0.2.8", proto.CloneOf(hello))
	wantCommits := int64(0)
	if revs != nil {
		wantCommits = 1 // the presence
	}
	if n != wantCommits || stored().GetLastSeenUnix() != written {
		t.Fatalf("unchanged hello: %d commits (want %d), stored contact %d (want %d)", n, wantCommits, stored().GetLastSeenUnix(), written)
	}
	if rec.GetLastSeenUnix() != clock.Now().Unix() || rec.GetPublicAddr() != "192.0.2.8" {
		t.Fatalf("the welcome's record: %v", rec)
	}
	if got, online := svc.peers.get(id); !online || got.GetLastSeenUnix() != clock.Now().Unix() {
		t.Fatalf("in memory: online %v, contact %d, want %d", online, got.GetLastSeenUnix(), clock.Now().Unix())
	}
	if revs != nil {
		pr, or, lease := revs(id)
		if pr != pBefore || or <= pr || lease == 0 {
			t.Fatalf("unchanged hello on etcd: p/ at %d (was %d), o/ at %d lease %x", pr, pBefore, or, lease)
		}
	}

	// Each fact that changes is written.
	for _, tc := range []struct {
		what string
		mark func()
		h    *pb.PeerHello
	}{
		{"disabled", nil, &pb.PeerHello{Info: hello.GetInfo(), Disabled: true}},
		{"enabled again", nil, hello},
		{"another hostname", nil, &pb.PeerHello{Info: &pb.PeerInfo{Hostname: "renamed", PrivateIps: hello.GetInfo().GetPrivateIps()}}},
		{"passive before", func() {
			if _, err := svc.peers.modify(id, func(rec *pb.Peer) error { rec.PassiveUnix = clock.Now().Unix(); return nil }); err != nil {
				t.Fatal(err)
			}
		}, &pb.PeerHello{Info: &pb.PeerInfo{Hostname: "renamed", PrivateIps: hello.GetInfo().GetPrivateIps()}}},
	} {
		clock.Advance(time.Minute)
		if tc.mark != nil {
			tc.mark()
		}
		_, n := register("192.0.2.8", tc.h)
		got := stored()
		if n != 1 || got.GetLastSeenUnix() != clock.Now().Unix() || got.GetDisabled() != tc.h.GetDisabled() ||
			got.GetInfo().GetHostname() != tc.h.GetInfo().GetHostname() || got.GetPassiveUnix() != 0 {
			t.Fatalf("%s: %d commits, stored %v", tc.what, n, got)
		}
		checkFolded(tc.what)
	}

	// The replaced session's end takes nothing back; the current one's
	// takes back its presence and records the contact in memory.
	replaced := sess
	clock.Advance(time.Minute)
	register("192.0.2.8", &pb.PeerHello{Info: &pb.PeerInfo{Hostname: "renamed", PrivateIps: hello.GetInfo().GetPrivateIps()}})
	if svc.peers.detach(id, replaced, clock.Now()) {
		t.Fatal("the replaced session detached the current one")
	}
	if _, or, _ := revsOr(revs, id); revs != nil && or == 0 {
		t.Fatal("the replaced session's end took back the current one's presence")
	}
	clock.Advance(time.Minute)
	if !svc.peers.detach(id, sess, clock.Now()) {
		t.Fatal("detach: not the peer's session")
	}
	if got, online := svc.peers.get(id); online || got.GetLastSeenUnix() != clock.Now().Unix() {
		t.Fatalf("after the session: online %v, contact %d", online, got.GetLastSeenUnix())
	}
	if _, or, _ := revsOr(revs, id); or != 0 {
		t.Fatal("presence after the session ended")
	}
}

// addressedService is a service on st whose host knows one address and
// one connection of every peer (192.0.2.1).
func addressedService(t *testing.T, st *Store, clock *mesh.ManualClock) *Service {
	t.Helper()
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	signer, _ := mesh.NewKeySigner(key)
	svc, err := NewService(ServiceConfig{Store: st, Signer: signer, Clock: clock,
		PeerAddrs: func(peer.ID) []ma.Multiaddr { return []ma.Multiaddr{ma.StringCast("/ip4/192.0.2.1/tcp/1")} },
		ConnAddrs: func(peer.ID) []ma.Multiaddr { return []ma.Multiaddr{ma.StringCast("/ip4/192.0.2.1/tcp/2")} }})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func revsOr(revs func(peer.ID) (int64, int64, int64), id peer.ID) (int64, int64, int64) {
	if revs == nil {
		return 0, 0, 0
	}
	return revs(id)
}
