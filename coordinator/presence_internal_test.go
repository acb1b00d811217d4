package coordinator

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"slices"
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

// TestStrangeStoreRecordsChangeNoLiveView (attack: whoever can write the
// site's etcd prefix, or a coordinator gone wrong): presence records that
// do not decode, that name a peer this coordinator holds, member records
// that do not decode or name this coordinator, peer records that do not
// decode or name another peer than their key. No panic; a session held
// here keeps its own addresses and IP; nothing is taken from garbage.
func TestStrangeStoreRecordsChangeNoLiveView(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	cfg := testEtcdConfig(srv, "/jumpmesh/strange/")
	st, err := openMember(t, cfg, "a", "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	var recs []*pb.Peer
	mustUpdate(t, st, func(tx *Tx) error {
		for i := range 4 {
			p := fakePeer(t, i, "user:ann", now)
			recs = append(recs, p)
			if err := tx.PutPeer(p); err != nil {
				return err
			}
		}
		return nil
	})
	held, unheld, garbled, victim := peer.ID(recs[0].GetId()), peer.ID(recs[1].GetId()), peer.ID(recs[2].GetId()), peer.ID(recs[3].GetId())
	own := ma.StringCast("/ip4/192.0.2.10/tcp/4001")
	conn := ma.StringCast("/ip4/192.0.2.10/tcp/50000")
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	signer, _ := mesh.NewKeySigner(key)
	svc, err := NewService(ServiceConfig{Store: st, Signer: signer, Clock: mesh.NewManualClock(now),
		PeerAddrs: func(id peer.ID) []ma.Multiaddr {
			if id == held {
				return []ma.Multiaddr{own}
			}
			return nil
		},
		ConnAddrs: func(id peer.ID) []ma.Multiaddr {
			if id == held {
				return []ma.Multiaddr{conn}
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	svc.peers.attach(held, newPeerSession(held, nil))

	cli := rawEtcd(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	put := func(key string, v []byte) {
		t.Helper()
		if _, err := cli.Put(ctx, cfg.Prefix+key, string(v)); err != nil {
			t.Fatal(err)
		}
	}
	evil, _ := json.Marshal(presenceRecord{Instance: "evil", Addrs: []string{"/ip4/203.0.113.66/tcp/1"}, Conns: []string{"/ip4/203.0.113.66/tcp/2"}, IP: "203.0.113.66"})
	put("o/"+string(held), evil)                       // names a peer held here
	put("o/"+string(garbled), []byte("\x00{not json")) // garbage
	put("o/not-a-peer-id", evil)                       // a key no peer has
	put("c/evil", []byte("}{"))                        // a member that does not decode
	put("c/a", []byte(`{"instance":"a","addrs":["/ip4/203.0.113.66/tcp/1"]}`))
	other := proto.Clone(recs[3]).(*pb.Peer)
	other.Settings.Name = "hijacked"
	otherBytes, _ := proto.Marshal(other)
	put("p/"+string(unheld), otherBytes) // names another peer (victim) than its key
	put("p/"+string(garbled), []byte("\xff\xff\xff"))
	// A sentinel after them all: once it is applied, so are they.
	sentinel, _ := json.Marshal(presenceRecord{Instance: "b", Addrs: []string{"/ip4/198.51.100.7/tcp/4001"}, Conns: []string{"/ip4/198.51.100.7/tcp/4002"}})
	put("o/"+string(unheld), sentinel)
	deadline := time.Now().Add(10 * time.Second)
	for !svc.PeerOnlineForTest(unheld) {
		if time.Now().After(deadline) {
			t.Fatal("the sentinel presence record was not applied")
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}

	// The held peer keeps this coordinator's view.
	if got := svc.hostAddrs(held); len(got) != 1 || !got[0].Equal(own) {
		t.Errorf("held peer's addresses %v, want its own %s", got, own)
	}
	if ip := svc.peerIP(held); ip != "192.0.2.10" {
		t.Errorf("held peer's IP %q", ip)
	}
	if _, online := svc.peers.get(held); !online {
		t.Error("held peer offline")
	}
	// Garbage is no presence; the sentinel's is.
	if _, online := svc.peers.get(garbled); online {
		t.Error("a garbage presence record made a peer online")
	}
	if got := svc.hostAddrs(unheld); len(got) != 1 || got[0].String() != "/ip4/198.51.100.7/tcp/4001" {
		t.Errorf("another coordinator's peer at %v", got)
	}
	if ip := svc.peerIP(unheld); ip != "198.51.100.7" {
		t.Errorf("another coordinator's peer IP %q", ip)
	}
	// Peer records that lie about their peer are not taken.
	for _, id := range []peer.ID{unheld, victim, garbled} {
		rec, _ := svc.peers.get(id)
		if rec == nil || rec.GetSettings().GetName() == "hijacked" {
			t.Errorf("peer %s: %v", id, rec.GetSettings())
		}
	}
	// Members: neither garbage nor a record of this instance's name.
	ms := svc.members()
	if len(ms) != 1 || !ms[0].Self || slices.ContainsFunc(svc.memberAddrs(), func(a ma.Multiaddr) bool { return a.String() == "/ip4/203.0.113.66/tcp/1" }) {
		t.Errorf("members %+v", ms)
	}
	// The held peer leaves: the record that names another coordinator is
	// not this one's to delete.
	svc.peers.detach(held, svc.peers.session(held), now)
	resp, err := cli.Get(ctx, cfg.Prefix+"o/"+string(held))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("o/held after its session here ended: %v %v", resp, err)
	}
}

// TestPresenceFollowsSessions: a session's start puts o/<its peer> under
// the member's lease, naming this instance and what its host knows; its
// end deletes it; a later session elsewhere is not deleted by an old one
// here ending.
func TestPresenceFollowsSessions(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	cfg := testEtcdConfig(srv, "/jumpmesh/presence/")
	st, err := openMember(t, cfg, "a", "")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	p := fakePeer(t, 0, "user:ann", now)
	id := peer.ID(p.GetId())
	mustUpdate(t, st, func(tx *Tx) error { return tx.PutPeer(p) })
	svc := addressedService(t, st, mesh.NewManualClock(now))
	cli := rawEtcd(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	get := func() (*presenceRecord, int64) {
		t.Helper()
		resp, err := cli.Get(ctx, cfg.Prefix+"o/"+string(id))
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Kvs) == 0 {
			return nil, 0
		}
		var rec presenceRecord
		if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
			t.Fatal(err)
		}
		return &rec, resp.Kvs[0].Lease
	}
	sess := newPeerSession(id, nil)
	svc.peers.attach(id, sess)
	rec, lease := get()
	if rec == nil || rec.Instance != "a" || rec.IP != "192.0.2.1" || len(rec.Addrs) != 1 || lease != int64(st.kv.(*etcdKV).fence.Load().lease) {
		t.Fatalf("presence %+v under lease %x", rec, lease)
	}
	svc.peers.detach(id, sess, now)
	if rec, _ := get(); rec != nil {
		t.Fatalf("presence after the session ended: %+v", rec)
	}
	// The peer moved to b; an old session here ends late.
	sess = newPeerSession(id, nil)
	svc.peers.attach(id, sess)
	moved, _ := json.Marshal(presenceRecord{Instance: "b"})
	if _, err := cli.Put(ctx, cfg.Prefix+"o/"+string(id), string(moved)); err != nil {
		t.Fatal(err)
	}
	svc.peers.detach(id, sess, now)
	if rec, _ := get(); rec == nil || rec.Instance != "b" {
		t.Fatalf("b's presence after a's old session ended: %+v", rec)
	}
}
