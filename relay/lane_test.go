package relay_test

import (
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/dht"
	"github.com/jumpmesh/jumpmesh/relay"
)

// TestRelayACLPassesTheStormQueue: after a coordinator restart whose
// reconnect storm holds every place of its main port, the relay's ACL
// fetch takes the members' lane and is answered at once. A relay whose
// fetches waited behind the storm kept its last ACL, and after three
// periods the coordinator stopped handing it out and its /healthz turned
// unhealthy.
func TestRelayACLPassesTheStormQueue(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	r := runRelay(t, relayConfig(t, site, "relay-1"))
	site.AnsweredOnLane(t, r.ID(), func() time.Time { return relay.ACLFetchedAt(r) })
}

// TestRelayFindsTheSiteThroughTheDHT (issue 16 part 2: "the private DHT
// finds the others"): the site's coordinator moved while a relay ran
// (another host, other ports: every address the relay knew, its members'
// lane too, leads nowhere). The relay keeps no list of relays; it asks the
// DHT servers of its routing table — here another member's node that
// knows where the coordinator is now — and its ACL fetches are answered
// again, from the coordinator's new address.
func TestRelayFindsTheSiteThroughTheDHT(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	other := member(t, site, "tech-1")
	cfg := relayConfig(t, site, "relay-1")
	cfg.Refresh = time.Hour // the test fetches (Refresh)
	r := runRelay(t, cfg)
	node, err := dht.New(other, dht.Config{Site: site.Coord.ID(), Infra: func(peer.ID) bool { return true }, Member: func(peer.ID) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	if err := other.Connect(site.Ctx(), peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}); err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 10*time.Second, "the member's node in the relay's routing table", func() bool {
		return slices.Contains(r.DHT().RoutingTable(), other.ID())
	})

	site.Move()
	moved := time.Now()
	other.Peerstore().AddAddrs(site.Coord.ID(), site.Coord.LoginAddrs(), peerstore.PermanentAddrTTL)
	if err := relay.Refresh(site.Ctx(), r); err != nil {
		t.Fatalf("the relay's ACL fetch after the coordinator moved: %v", err)
	}
	if !relay.ACLFetchedAt(r).After(moved) {
		t.Fatal("no ACL fetched from the moved coordinator")
	}
}
