package relay_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/dht"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestRelayServesTheSiteDHT: the relay and the coordinator are DHT servers
// in each other's routing table; strangers are shut out of the relay's;
// and a console whose addresses for a host are stale finds the host
// through the relay, the only server connected to it.
func TestRelayServesTheSiteDHT(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	r := runRelay(t, relayConfig(t, site, "relay-1"))
	coordinatortest.Eventually(t, 10*time.Second, "the coordinator and the relay in each other's routing table", func() bool {
		return slices.Contains(site.Coord.DHT().RoutingTable(), r.ID()) && slices.Contains(r.DHT().RoutingTable(), site.Coord.ID())
	})
	atRelay := []peer.AddrInfo{relayInfo(t, r.Addrs())}

	short := func() context.Context {
		ctx, cancel := context.WithTimeout(site.Ctx(), 500*time.Millisecond)
		t.Cleanup(cancel)
		return ctx
	}
	if _, err := dht.Lookup(short(), stranger(t), site.Coord.ID(), atRelay, site.Coord.ID()); !errors.Is(err, dht.ErrNoServers) {
		t.Fatalf("a stranger's lookup at the relay: %v, want ErrNoServers", err)
	}

	// A technician's key on a host of its own, known to the relay alone:
	// its console (the same key) is closed, so the coordinator's addresses
	// for that key are stale.
	site.User("tech-1", pb.Role_ROLE_TECHNICIAN).Close()
	key, err := mesh.LoadKeyFile(filepath.Join(site.Dir, "consoles", "tech-1", console.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	h := newHost(t, key, "/ip4/127.0.0.1/tcp/0")
	// Its own lookup is answered once the relay's ACL has it: it is then a
	// member, connected to the relay.
	coordinatortest.Eventually(t, 10*time.Second, "the relay to admit the new member", func() bool {
		_, err := dht.Lookup(short(), h, site.Coord.ID(), atRelay, site.Coord.ID())
		return err == nil || errors.Is(err, dht.ErrNotFound)
	})
	var listen ma.Multiaddr
	for _, a := range h.Network().ListenAddresses() {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			listen = a
		}
	}
	if slices.ContainsFunc(site.Coord.Host().Peerstore().Addrs(h.ID()), listen.Equal) {
		t.Fatal("the coordinator knows the host's address; the test wants only the relay to")
	}
	nowhere := ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", coordinatortest.FreePort(t, "tcp")))
	if err := site.Admin.Connect(site.Ctx(), h.ID(), []ma.Multiaddr{nowhere}, r.Addrs(), false); err != nil {
		t.Fatalf("connect with a stale address: %v", err)
	}
	if path := console.PathTo(site.Admin.Host(), h.ID()); path.Kind != console.PathDirect || !path.Addr.Equal(listen) {
		t.Fatalf("the console reached the host %s, want direct at %s (learned from the relay)", path, listen)
	}
}
