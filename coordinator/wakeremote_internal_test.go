package coordinator

import (
	"context"
	"encoding/json"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
)

// fakeWakers is a WakeSender that keeps the orders it is given and
// reports one send for each, for the wakers it reaches.
type fakeWakers struct {
	mu     sync.Mutex
	orders map[peer.ID][]*pb.WakeCommand
}

func (f *fakeWakers) Order(_ context.Context, waker peer.ID, cmd *pb.WakeCommand) (*pb.WakeReport, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.orders == nil {
		f.orders = map[peer.ID][]*pb.WakeCommand{}
	}
	f.orders[waker] = append(f.orders[waker], cmd)
	return &pb.WakeReport{Sent: []string{"eth0 udp 255.255.255.255:9"}}, nil
}

func (f *fakeWakers) Forward(context.Context, *pb.WakeCommand, []string) []string { return nil }

func (f *fakeWakers) of(id peer.ID) []*pb.WakeCommand {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.orders[id])
}

// Wakers held by another coordinator: two coordinators on one etcd; the
// target is asleep, its one neighbour behind the same gateway is held by
// b. A wake asked of a reaches the neighbour through b, with a's signed
// command, and a answers with the neighbour's report. The attack side: an
// order under wo/ for a peer b does not hold orders no one (b answers why);
// one that does not decode is ignored.
func TestWakeThroughAnotherCoordinator(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	lan := func(name, mac, ip string) *pb.Peer {
		rec := fakePeer(t, len(name), "user:ann", now)
		rec.Settings.Name = name
		rec.Info = &pb.PeerInfo{Hostname: name, GatewayIp: "192.168.1.1", GatewayMac: "aa:aa:aa:aa:aa:01", PrivateIps: []string{ip},
			Nics: []*pb.Nic{{Name: "eth0", Mac: mac, Addrs: []string{ip + "/24"}, DefaultRoute: true}}}
		return rec
	}
	target, waker := lan("pc-01", "02:00:00:00:00:01", "192.168.1.10"), lan("pc-002", "02:00:00:00:00:02", "192.168.1.11")
	svcs, stores := siteMembers(t, now, func(st *Store) {
		mustUpdate(t, st, func(tx *Tx) error {
			if err := tx.PutPeer(target); err != nil {
				return err
			}
			return tx.PutPeer(waker)
		})
	}, "a", "b")
	a, b := svcs[0], svcs[1]
	senderA, senderB := &fakeWakers{}, &fakeWakers{}
	a.wakeSender, b.wakeSender = senderA, senderB
	w := peer.ID(waker.GetId())
	sess := newPeerSession(w, nil)
	b.peers.attach(w, sess)
	t.Cleanup(func() { b.peers.detach(w, sess, now) })
	eventually(t, 10*time.Second, "a sees the waker online at b", func() bool { return a.peers.remoteOf(w) != nil })

	start := time.Now()
	resp, err := a.wakeRequest(rootCaller, &pb.WakeRequest{Ref: peer.ID(target.GetId()).String()})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a wake through a, its waker held by b: answered in %s", time.Since(start).Round(100*time.Microsecond))
	ws := resp.GetWake().GetWakers()
	if len(ws) != 1 || peer.ID(ws[0].GetId()) != w || len(ws[0].GetSent()) != 1 || ws[0].GetError() != nil {
		t.Fatalf("wakers in a's answer: %v", ws)
	}
	orders := senderB.of(w)
	if len(orders) != 1 || len(senderA.of(w)) != 0 {
		t.Fatalf("b gave the waker %d orders, a %d; want b 1, a 0", len(orders), len(senderA.of(w)))
	}
	body, err := wake.Verify(orders[0], a.siteID, "", time.Now())
	if err != nil || peer.ID(body.GetTargetId()) != peer.ID(target.GetId()) {
		t.Fatalf("the command b forwarded: %v (target %v)", err, body.GetTargetId())
	}
	eventually(t, 10*time.Second, "the order and its reply deleted", func() bool {
		return len(recordsUnder(t, stores[0], wakeOrderPrefix)) == 0 && len(recordsUnder(t, stores[0], wakeReplyPrefix)) == 0
	})

	// Orders written straight into etcd: one for a peer b does not hold,
	// one that does not decode. b orders no one.
	stranger := newPeerID(t)
	v, _ := json.Marshal(wakeOrder{Waker: []byte(stranger)})
	mustUpdate(t, stores[0], func(tx *Tx) error {
		if err := tx.kv.set([]byte(wakeOrderPrefix+"b/garbage"), []byte("not json")); err != nil {
			return err
		}
		return tx.kv.set([]byte(wakeOrderPrefix+"b/forged"), v)
	})
	eventually(t, 10*time.Second, "b's answer to the forged order", func() bool {
		r, ok := recordsUnder(t, stores[0], wakeReplyPrefix)[wakeReplyPrefix+"forged"]
		return ok && r != ""
	})
	if r := recordsUnder(t, stores[0], wakeReplyPrefix)[wakeReplyPrefix+"forged"]; !json.Valid([]byte(r)) || len(senderB.of(stranger)) != 0 {
		t.Fatalf("b's answer %q, orders to the stranger %d", r, len(senderB.of(stranger)))
	}
	if _, ok := recordsUnder(t, stores[0], wakeReplyPrefix)[wakeReplyPrefix+"garbage"]; ok {
		t.Fatal("b answered an order that does not decode")
	}
}
