package coordinator

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/prometheus/client_golang/prometheus"
)

// peers_online is the peers connected to the coordinator scraped: two
// coordinators on one etcd, a peer held by b; a's metric says 0 and b's 1
// (a sum over the site counts it once), while both list it online.
func TestPeersOnlineMetricCountsPeersHeldHere(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	svcs, _ := siteMembers(t, now, nil, "a", "b")
	a, b := svcs[0], svcs[1]
	rec := fakePeer(t, 1, "user:ann", now)
	if err := b.peers.put(rec); err != nil {
		t.Fatal(err)
	}
	p := peer.ID(rec.GetId())
	sess := newPeerSession(p, nil)
	b.peers.attach(p, sess)
	t.Cleanup(func() { b.peers.detach(p, sess, now) })
	eventually(t, 10*time.Second, "a lists b's peer online", func() bool { _, on := a.PeerCounts(); return on == 1 })
	if _, on := b.PeerCounts(); on != 1 {
		t.Fatalf("b lists %d online, want 1", on)
	}
	for _, c := range []struct {
		svc  *Service
		want float64
	}{{a, 0}, {b, 1}} {
		reg := prometheus.NewRegistry()
		(&metrics{}).registerPeers(reg, c.svc)
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		got := -1.0
		for _, f := range families {
			if f.GetName() == "jumpmesh_coordinator_peers_online" {
				got = f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		if got != c.want {
			t.Fatalf("%s's peers_online %v, want %v", c.svc.store.Instance(), got, c.want)
		}
	}
}
