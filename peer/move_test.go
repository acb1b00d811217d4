package peer_test

import (
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	lpeer "github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

// TestMoveOrderCannotMisleadAPeer: an order to move (coordinator/
// rebalance.go) comes only on the peer's stream to the site; even so,
// one whose addresses are garbage, another ID's or a relay circuit is
// ignored, and one naming an impostor's address (another host) is dialed
// once, fails the handshake's ID check, and the peer comes back online at
// its coordinator with the addresses it knew.
func TestMoveOrderCannotMisleadAPeer(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (harness_test.go)
	site := coordinatortest.New(t, console.Login)
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "mover"})
	siteID := peer.CoordinatorOf(h.d).ID
	known := peer.CoordinatorOf(h.d).Addrs

	key, _, _ := crypto.GenerateEd25519Key(nil)
	other, _ := lpeer.IDFromPrivateKey(key)
	bad := [][]byte{[]byte("\xffnot a multiaddr"),
		ma.StringCast("/ip4/127.0.0.1/tcp/1/p2p/" + other.String()).Bytes(),
		ma.StringCast("/ip4/127.0.0.1/tcp/1/p2p/" + other.String() + "/p2p-circuit").Bytes()}
	if peer.MoveTo(h.d, &pb.PeerMove{Addrs: bad, Reason: "garbage"}) {
		t.Fatal("an order naming no coordinator address of the site was taken")
	}

	lie := ma.StringCast(impostor(t))
	if !peer.MoveTo(h.d, &pb.PeerMove{Addrs: [][]byte{lie.Bytes()}, Reason: "to an impostor"}) {
		t.Fatal("an order naming a well-formed address was ignored")
	}
	_ = peer.HostOf(h.d).Network().ClosePeer(siteID) // the session ends, as after the order
	eventuallyTicking(t, site, 30*time.Second, "the peer online at its coordinator again", func() bool {
		for _, c := range peer.HostOf(h.d).Network().ConnsToPeer(siteID) {
			if c.RemoteMultiaddr().Equal(lie) {
				t.Fatalf("the peer holds a connection to the site's ID at the impostor's address %s", lie)
			}
		}
		views, err := site.Admin.Peers(site.Ctx(), "id:"+h.id(), true)
		return err == nil && len(views) == 1 && views[0].GetStatus() == "online" &&
			len(peer.HostOf(h.d).Network().ConnsToPeer(siteID)) > 0
	})
	for _, a := range known {
		if !slices.ContainsFunc(peer.HostOf(h.d).Peerstore().Addrs(siteID), a.Equal) {
			t.Errorf("the site's address %s left the peerstore after the move", a)
		}
	}
}
