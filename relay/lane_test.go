package relay_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
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
// lane too, leads nowhere). The relay asks the DHT servers of its routing table — here another member's node that
// knows where the coordinator is now — and its ACL fetches are answered
// again, from the coordinator's new address.
func TestRelayFindsTheSiteThroughTheDHT(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	r, move := relayWithAMemberNode(t, site, "relay-1")
	moved := time.Now()
	move()
	if !relay.ACLFetchedAt(r).After(moved) {
		t.Fatal("no ACL fetched from the moved coordinator")
	}
}

// TestRestartedRelayFindsTheMovedSite: the site's coordinator moved while
// relay-1 was down; relay-2 ran on and found it again (through a member's
// DHT node, as in TestRelayFindsTheSiteThroughTheDHT). relay-1 starts
// with only the dead addresses in its config (and on its command line):
// it asks the relays its config kept (relay-2, named by its last ACL
// answer) where the site is, fetches its first ACL from the new address
// and starts. Before, a relay kept no relay list and knew none until its
// DHT started, which is after its first ACL: it did not start.
func TestRestartedRelayFindsTheMovedSite(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	r2, move := relayWithAMemberNode(t, site, "relay-2")
	cfg1 := relayConfig(t, site, "relay-1")
	r1, err := relay.New(site.Ctx(), cfg1)
	if err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 20*time.Second, "relay-1 keeps relay-2 in its config", func() bool {
		if err := relay.Refresh(site.Ctx(), r1); err != nil {
			t.Fatal(err)
		}
		kept, err := relay.KeptRelays(cfg1.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		return slices.ContainsFunc(kept, func(a string) bool { return strings.HasSuffix(a, "/p2p/"+r2.ID().String()) })
	})
	if err := r1.Close(); err != nil {
		t.Fatal(err)
	}
	moved := time.Now()
	move()
	r1 = runRelay(t, cfg1)
	if !relay.ACLFetchedAt(r1).After(moved) {
		t.Fatal("relay-1 started without an ACL from the moved coordinator")
	}
}

// TestRestartedRelayTakesTheCoordinatorGiven: a lone relay restarted after
// its site's coordinator moved, with the new address on its command line,
// dials it (an enrolled directory used to ignore --coordinator) and
// starts; an address of another site is refused with what to do.
func TestRestartedRelayTakesTheCoordinatorGiven(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	cfg := relayConfig(t, site, "relay-1")
	r, err := relay.New(site.Ctx(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	site.Move()
	moved := time.Now()

	other, err := peer.Decode("12D3KooWGzBpJ4aPDZ4mDCLhqsvUZRJqrT1DzBk7kDaYBhvP6LCn")
	if err != nil {
		t.Fatal(err)
	}
	wrong := cfg
	wrong.Coordinator = "/ip4/127.0.0.1/tcp/1/p2p/" + other.String()
	if _, err := relay.New(site.Ctx(), wrong); catalog.CodeOf(err) != catalog.CodeInvalidArgument || !strings.Contains(err.Error(), "enrolled in site") {
		t.Fatalf("a relay restarted with another site's coordinator: %v, want %s saying where it is enrolled", err, catalog.CodeInvalidArgument)
	}

	cfg.Coordinator = site.Addr // the new address
	r = runRelay(t, cfg)
	if !relay.ACLFetchedAt(r).After(moved) {
		t.Fatal("the relay started without an ACL from the moved coordinator")
	}
}

// relayWithAMemberNode runs relay name (fetching only when the test asks:
// Refresh) with a member's DHT node in its routing table. move moves the
// site's coordinator, tells the member's node where it is now, and has the
// relay fetch its ACL: through the node (FindSiteAlso), as nothing else
// knows the new address.
func relayWithAMemberNode(t *testing.T, site *coordinatortest.Site[*console.Client], name string) (r *relay.Relay, move func()) {
	t.Helper()
	other := member(t, site, "tech-"+name)
	cfg := relayConfig(t, site, name)
	cfg.Refresh = time.Hour // the test fetches (Refresh)
	r = runRelay(t, cfg)
	node, err := dht.New(other, dht.Config{Site: site.Coord.ID(), Infra: func(peer.ID) bool { return true }, Member: func(peer.ID) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	if err := other.Connect(site.Ctx(), peer.AddrInfo{ID: r.ID(), Addrs: r.Addrs()}); err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 10*time.Second, "the member's node in "+name+"'s routing table", func() bool {
		return slices.Contains(r.DHT().RoutingTable(), other.ID())
	})
	return r, func() {
		t.Helper()
		site.Move()
		other.Peerstore().AddAddrs(site.Coord.ID(), site.Coord.LoginAddrs(), peerstore.PermanentAddrTTL)
		if err := relay.Refresh(site.Ctx(), r); err != nil {
			t.Fatalf("%s's ACL fetch after the coordinator moved: %v", name, err)
		}
	}
}
