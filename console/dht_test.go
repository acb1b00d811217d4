package console_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	libp2ppeer "github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// Tests of the DHT fallback of Client.Connect: the coordinator's record of
// a peer is stale (the console is handed an address where nothing
// listens), and the site's DHT knows better.

// knownTo starts a host and connects it to the site's coordinator, which
// then knows its addresses (identify) as it knows an online peer's.
func knownTo(t *testing.T, site *coordinatortest.Site[*console.Client]) host.Host {
	t.Helper()
	h := newLoopbackHost(t)
	t.Cleanup(func() { h.Close() })
	coord, err := libp2ppeer.AddrInfoFromString(site.Addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Connect(site.Ctx(), *coord); err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 10*time.Second, "the coordinator to learn the host's addresses", func() bool {
		return len(site.Coord.Host().Peerstore().Addrs(h.ID())) > 0
	})
	return h
}

// nowhere is a loopback address where nothing listens.
func nowhere(t *testing.T) []ma.Multiaddr {
	return []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", coordinatortest.FreePort(t, "tcp")))}
}

func lookups(result string) float64 {
	return testutil.ToFloat64(console.DHTLookups().WithLabelValues(result))
}

func TestConnectFallsBackToTheSiteDHT(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	target := knownTo(t, site)
	found, notFound := lookups(console.LookupFound), lookups(console.LookupNotFound)
	if err := site.Admin.Connect(site.Ctx(), target.ID(), nowhere(t), nil, false); err != nil {
		t.Fatalf("connect with a stale address: %v", err)
	}
	if site.Admin.Host().Network().Connectedness(target.ID()) != network.Connected {
		t.Fatal("not connected to the peer")
	}
	if got := lookups(console.LookupFound) - found; got != 1 {
		t.Fatalf("%v lookups found the peer, want 1", got)
	}
	if got := lookups(console.LookupNotFound) - notFound; got != 0 {
		t.Fatalf("%v lookups did not find the peer, want 0", got)
	}
}

func TestConnectFailsWhenTheDHTDoesNotKnowThePeer(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	stranger := newLoopbackHost(t)
	t.Cleanup(func() { stranger.Close() })
	notFound := lookups(console.LookupNotFound)
	err := site.Admin.Connect(site.Ctx(), stranger.ID(), nowhere(t), nil, false)
	coordinatortest.WantCode(t, err, catalog.CodeConnectTimeout)
	if got := lookups(console.LookupNotFound) - notFound; got != 1 {
		t.Fatalf("%v lookups did not find the peer, want 1", got)
	}
}

// A console told to go through relays only never dials what the DHT says.
func TestConnectThroughRelaysOnlySkipsTheDHT(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	target := knownTo(t, site)
	found, notFound := lookups(console.LookupFound), lookups(console.LookupNotFound)
	err := site.Admin.Connect(site.Ctx(), target.ID(), nowhere(t), nil, true)
	coordinatortest.WantCode(t, err, catalog.CodeConnectTimeout)
	if lookups(console.LookupFound) != found || lookups(console.LookupNotFound) != notFound {
		t.Fatal("a relays-only connect looked the peer up")
	}
}
