package member_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/member"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestLoginKeepsEveryCoordinator: the login answer's addresses (every live
// coordinator's) are kept after the login address, with /p2p/<site>.
func TestLoginKeepsEveryCoordinator(t *testing.T) {
	site := coordinatortest.New(t, coordinatortest.MemberLogin)
	c, f := loginRelay(t, site)
	defer c.Close()
	cfg, err := f.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, a := range site.Coord.LoginAddrs() {
		want = append(want, a.String())
	}
	if !slices.Equal(cfg.Coordinator, want) {
		t.Fatalf("kept %v, want %v", cfg.Coordinator, want)
	}
}

// TestLearnKeepsOnlyTheSitesAddresses is the attack test of the list a
// control answer carries, as members keep it: garbage and
// addresses of another peer ID are dropped, a list with nothing usable
// does not wipe the kept one, and the login address always stays first.
func TestLearnKeepsOnlyTheSitesAddresses(t *testing.T) {
	site := coordinatortest.New(t, coordinatortest.MemberLogin)
	m, f := loginRelay(t, site)
	defer m.Close()
	h, id := m.Host(), m.Site()
	key, _, _ := crypto.GenerateEd25519Key(nil)
	other, _ := peer.IDFromPrivateKey(key)
	b := func(s string) []byte { return ma.StringCast(s).Bytes() }
	good := "/ip4/10.0.0.2/tcp/4830"
	kept := func() []string {
		cfg, err := f.LoadConfig()
		if err != nil {
			t.Fatal(err)
		}
		return cfg.Coordinator
	}
	before := kept()
	for _, c := range []struct {
		name    string
		raw     [][]byte
		changed bool
		want    []string
	}{
		{"nothing", nil, false, before},
		{"garbage", [][]byte{{0xff}, {}, []byte(good)}, false, before},
		{"another peer ID", [][]byte{b(good + "/p2p/" + other.String())}, false, before},
		{"the site's among others", [][]byte{{0x01}, b(good + "/p2p/" + other.String()), b(good)}, true,
			[]string{site.Addr, good + "/p2p/" + id.String()}},
		{"the same again", [][]byte{b(good + "/p2p/" + id.String())}, false, []string{site.Addr, good + "/p2p/" + id.String()}},
	} {
		if changed := m.Learn(c.raw); changed != c.changed {
			t.Errorf("%s: changed %v, want %v", c.name, changed, c.changed)
		}
		if got := kept(); !slices.Equal(got, c.want) {
			t.Errorf("%s: kept %v, want %v", c.name, got, c.want)
		}
	}
	if !slices.ContainsFunc(h.Peerstore().Addrs(id), ma.StringCast(good).Equal) {
		t.Error("the learned address is not in the peerstore: the next connect would not dial it")
	}
	for _, a := range h.Peerstore().Addrs(other) {
		t.Errorf("the peerstore holds %s for the other peer ID", a)
	}
}

// TestMemberReachesTheCoordinatorOverTCP: a member that learned the
// coordinator's QUIC address as well (every control answer carries them
// all) still connects over TCP, first and after the connection ended —
// libp2p would dial QUIC first, and identify would then tell a console no
// TCP mapping of its own to offer a hole punch (mesh.CoordinatorOverTCP).
func TestMemberReachesTheCoordinatorOverTCP(t *testing.T) {
	site := coordinatortest.New(t, coordinatortest.MemberLogin)
	c, f := loginRelay(t, site)
	c.Close()
	cfg, err := f.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(cfg.Coordinator, func(s string) bool { return strings.Contains(s, "/quic-v1") }) {
		t.Fatalf("the member learned no QUIC address of the coordinator (%v): the test shows nothing", cfg.Coordinator)
	}
	c, err = member.Open(f, mesh.HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h := c.Host()
	for round := range 2 {
		if _, err := c.Call(site.Ctx(), &pb.Request{Body: &pb.Request_Whoami{Whoami: &pb.Empty{}}}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		conns := h.Network().ConnsToPeer(c.Site())
		if len(conns) == 0 {
			t.Fatalf("round %d: no connection to the coordinator after a call", round)
		}
		for _, conn := range conns {
			if _, err := conn.RemoteMultiaddr().ValueForProtocol(ma.P_TCP); err != nil {
				t.Fatalf("round %d: connected to the coordinator at %s, want TCP", round, conn.RemoteMultiaddr())
			}
		}
		// identify tells the host the coordinator's QUIC address too:
		// the next connection must still go over TCP.
		h.Peerstore().AddAddrs(c.Site(), site.Coord.LoginAddrs(), time.Hour)
		if err := h.Network().ClosePeer(c.Site()); err != nil {
			t.Fatal(err)
		}
	}
}
