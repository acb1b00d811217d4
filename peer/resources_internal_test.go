package peer

import (
	"crypto/rand"
	"testing"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	ma "github.com/multiformats/go-multiaddr"
)

// circuitFrom is the remote address of a connection relayed by relayAddr.
func circuitFrom(t *testing.T, relayAddr string) ma.Multiaddr {
	t.Helper()
	_, pub, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return ma.StringCast(relayAddr + "/p2p/" + id.String() + "/p2p-circuit")
}

// openInbound opens n inbound connections from endpoint, in a row, and
// returns how many the resource manager admitted (they stay open).
func openInbound(t *testing.T, rm network.ResourceManager, endpoint ma.Multiaddr, n int) int {
	t.Helper()
	admitted := 0
	for range n {
		scope, err := rm.OpenConnection(network.DirInbound, false, endpoint)
		if err != nil {
			return admitted
		}
		t.Cleanup(scope.Done)
		admitted++
	}
	return admitted
}

// TestResourceManagerAdmitsARelaysCircuits: the connections a peer
// accepts through a relay all carry the relay's address. 40 technicians
// reaching the peer through one relay at once (twice libp2p's burst of 16
// new connections per address, five times its 8 open ones) are all
// admitted; libp2p's default resource manager, which the peer had, refuses
// some of them (in the lab the upgrader's "rate limit exceeded", and the
// console's CONNECTION_FAILED).
func TestResourceManagerAdmitsARelaysCircuits(t *testing.T) {
	const technicians = 40
	relay := "/ip4/198.51.100.11/udp/4832/quic-v1"

	rm, err := resourceManager()
	if err != nil {
		t.Fatal(err)
	}
	defer rm.Close()
	if got := openInbound(t, rm, circuitFrom(t, relay), technicians); got != technicians {
		t.Errorf("the peer admitted %d of %d circuits through one relay", got, technicians)
	}

	limits := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&limits)
	def, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits.AutoScale()))
	if err != nil {
		t.Fatal(err)
	}
	defer def.Close()
	if got := openInbound(t, def, circuitFrom(t, relay), technicians); got == technicians {
		t.Errorf("libp2p's default resource manager admitted all %d circuits: this test no longer shows what it guards against", technicians)
	}
}

// TestResourceManagerBoundsAStranger: without the per-address rate, a
// stranger dialling the peer's listening port from one address still
// meets a bound: connsPerAddress, below the system's own.
func TestResourceManagerBoundsAStranger(t *testing.T) {
	rm, err := resourceManager()
	if err != nil {
		t.Fatal(err)
	}
	defer rm.Close()
	stranger := ma.StringCast("/ip4/203.0.113.66/tcp/40000")
	if got := openInbound(t, rm, stranger, 4*connsPerAddress); got > connsPerAddress {
		t.Errorf("a stranger holds %d connections from one address, want at most %d", got, connsPerAddress)
	}
}
