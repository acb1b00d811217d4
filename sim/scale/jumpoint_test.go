package scale_test

import (
	"testing"

	"github.com/jumpmesh/jumpmesh/sim/scale"
)

// TestStormThroughAJumpoint: with Config.Jumpoint every peer registers
// through the jumpoint (one tunnel each, open while it is online), the
// coordinator records the jumpoint on each, and the peers come back
// through it after a coordinator restart.
func TestStormThroughAJumpoint(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (scale_test.go)
	e := newEngine(t, scale.Config{Peers: testPeers, Jumpoint: true})
	storm, err := e.Storm(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if storm.Registered != testPeers || storm.Online != testPeers || storm.Fleet.Welcomed != testPeers {
		t.Fatalf("storm: %d registered, %d online, %d welcomed; want %d", storm.Registered, storm.Online, storm.Fleet.Welcomed, testPeers)
	}
	st := e.Jumpoint().Stats()
	if st.GetTunnelsOpen() != testPeers || st.GetTunnelsTotal() < testPeers {
		t.Fatalf("jumpoint carries %d tunnels (%d in all), want one per peer: %d", st.GetTunnelsOpen(), st.GetTunnelsTotal(), testPeers)
	}
	views, err := e.Site.Peers(ctx(t), "status:online")
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		if js := v.GetPeer().GetJumpoints(); len(js) != 1 || string(js[0]) != string(e.Jumpoint().ID()) {
			t.Fatalf("peer %s: jumpoints %x, want the engine's", v.GetPeer().GetSettings().GetName(), js)
		}
	}
	if _, err := e.Reconnect(ctx(t)); err != nil {
		t.Fatal(err)
	}
	if st := e.Jumpoint().Stats(); st.GetTunnelsTotal() < 2*testPeers {
		t.Errorf("after the restart the jumpoint carried %d tunnels in all, want ≥ %d", st.GetTunnelsTotal(), 2*testPeers)
	}
}
