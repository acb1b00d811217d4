package jumpoint_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/jumpoint"
	"github.com/jumpmesh/jumpmesh/mesh/dht"
	"github.com/jumpmesh/jumpmesh/mesh/member"
)

// TestJumpointFindsTheSiteThroughItsRelay (issue 16 part 2: "the private
// DHT finds the others"): a jumpoint restarted after the site's
// coordinators moved knows only an address where none listens (no
// members' lane either) and the relays its last ACL named (kept in
// jumpoint.json). A jumpoint that
// cannot fetch its first ACL does not start; this one asks the relay (a
// server of the site's DHT) where the site is and starts, keeping the
// coordinator's own answer. Without the relay it does not start.
func TestJumpointFindsTheSiteThroughItsRelay(t *testing.T) {
	s := coordinatortest.New(t, coordinatortest.MemberLogin)
	cfg := jumpointConfig(t, s, "jp-1")
	j, err := jumpoint.New(s.Ctx(), cfg)
	if err != nil {
		t.Fatalf("first run: %v", err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	cfg.Invite, cfg.Coordinator = "", ""
	f := member.Files{Dir: cfg.DataDir, Key: jumpoint.KeyFile, Config: jumpoint.ConfigFile}
	siteID := s.Coord.ID()
	gone := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", coordinatortest.FreePort(t, "tcp"), siteID)
	rewrite := func(relays []string) {
		c, err := f.LoadConfig()
		if err != nil {
			t.Fatal(err)
		}
		c.Coordinator, c.Relays, c.Lane = []string{gone}, relays, nil
		if err := f.SaveConfig(c); err != nil {
			t.Fatal(err)
		}
	}

	rewrite(nil)
	if _, err := jumpoint.New(s.Ctx(), cfg); err == nil {
		t.Fatal("a jumpoint that knows no coordinator address where one listens started")
	}

	relay := coordinatortest.LoopbackHost(t)
	node, err := dht.New(relay, dht.Config{Site: siteID, Infra: func(peer.ID) bool { return false }, Member: func(peer.ID) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	relay.Peerstore().AddAddrs(siteID, s.Coord.LoginAddrs(), peerstore.PermanentAddrTTL)
	rewrite([]string{relay.Addrs()[0].String() + "/p2p/" + relay.ID().String()})

	runJumpoint(t, cfg)
	c, err := f.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range s.Coord.LoginAddrs() {
		if !slices.Contains(c.Coordinator, a.String()) {
			t.Errorf("the coordinator's address %s was not kept: %v", a, c.Coordinator)
		}
	}
}
