package peer_test

import (
	"context"
	"crypto/rand"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	lpeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
	"github.com/jumpmesh/jumpmesh/peer"
)

// TestNeighbourForwardsTheWakeToAPassivePeer is a passive peer woken
// through a neighbour, as the coordinator does it: the site orders an
// active peer (the waker) over the wake protocol to forward its signed
// command to the passive peer's port; the passive peer comes back online.
// The waker's report says what it sent. Only passive addresses on
// loopback are used: nothing leaves the machine.
func TestNeighbourForwardsTheWakeToAPassivePeer(t *testing.T) {
	site := passiveSite(t)
	waker := onlinePeer(t, site, &pb.InstallerDefaults{Name: "neighbour-01", ConnectionType: pb.ConnectionType_CONNECTION_TYPE_ACTIVE})
	sleeper, port := passivePeer(t, site, "sleeper-01")
	sleeper.waitPassive()
	sleeper.waitStatus(sleeper.id(), "passive")

	target, _ := lpeer.Decode(sleeper.id())
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := wakeCommand(t, siteSigner(t, site), target, time.Now().Add(wake.MaxValidity), addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	report, err := wake.Order(ctx, site.Coord.Host(), waker.d.ID(), cmd)
	if err != nil {
		t.Fatalf("order to the waker: %v (report %v)", err, report)
	}
	if len(report.GetSent()) == 0 {
		t.Fatalf("the waker sent nothing: %v", report)
	}
	t.Logf("waker sent: %q", report.GetSent())
	sleeper.waitStatus(sleeper.id(), "online")
}

// TestPeerWakeOrdersOnlyFromTheSite attacks a peer's wake handler. A
// stranger (any libp2p host that reaches the peer, e.g. a technician's
// console or another peer) holding a command the site really signed gets
// its stream reset, and the peer sends nothing: the passive peer the
// command names is not woken and its listener saw nothing. The site's own
// order with a command another key signed is refused with wake_failed and
// sends nothing either; the site's order with its command does wake it.
func TestPeerWakeOrdersOnlyFromTheSite(t *testing.T) {
	site := passiveSite(t)
	waker := onlinePeer(t, site, &pb.InstallerDefaults{Name: "neighbour-02", ConnectionType: pb.ConnectionType_CONNECTION_TYPE_ACTIVE})
	sleeper, port := passivePeer(t, site, "sleeper-02")
	sleeper.waitPassive()
	target, _ := lpeer.Decode(sleeper.id())
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	signer := siteSigner(t, site)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := mesh.NewHost(mesh.HostConfig{Key: key})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	wakerAddrs := site.Coord.Host().Peerstore().Addrs(waker.d.ID())
	if err := stranger.Connect(ctx, lpeer.AddrInfo{ID: waker.d.ID(), Addrs: wakerAddrs}); err != nil {
		t.Fatalf("stranger connecting to the waker: %v", err)
	}
	good := wakeCommand(t, signer, target, time.Now().Add(wake.MaxValidity), addr)
	if report, err := wake.Order(ctx, stranger, waker.d.ID(), good); err == nil || report != nil {
		t.Fatalf("stranger's order: report %v, err %v; want the stream reset, no report", report, err)
	}

	forged := wakeCommand(t, strangerSigner(t), target, time.Now().Add(wake.MaxValidity), addr)
	report, err := wake.Order(ctx, site.Coord.Host(), waker.d.ID(), forged)
	if !catalog.HasCode(err, catalog.CodeWakeFailed) || len(report.GetSent()) != 0 {
		t.Fatalf("site's order with another key's command: report %v, err %v; want wake_failed, nothing sent", report, err)
	}

	// Nothing reached the passive port: the site's real order is the first
	// thing its listener sees.
	if _, err := wake.Order(ctx, site.Coord.Host(), waker.d.ID(), good); err != nil {
		t.Fatalf("site's order: %v", err)
	}
	sleeper.waitStatus(sleeper.id(), "online")
	sleeper.waitCounters("the site's command accepted", func(c *peer.PassiveCounters) bool { return c.Accepted == 1 })
	if c := sleeper.state().PassiveCounters; c.Refused() != 0 {
		t.Fatalf("the passive port saw more than the site's command: %+v", c)
	}
}
