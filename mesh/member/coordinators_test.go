package member_test

import (
	"path/filepath"
	"slices"
	"testing"

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
	f := relayFiles(filepath.Join(t.TempDir(), "relay-1"))
	c, _, err := member.Login(site.Ctx(), f, site.Addr, site.Invite("relay-1", pb.Role_ROLE_RELAY), mesh.HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
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
// control answer carries, as relays and jumpoints keep it: garbage and
// addresses of another peer ID are dropped, a list with nothing usable
// does not wipe the kept one, and the login address always stays first.
func TestLearnKeepsOnlyTheSitesAddresses(t *testing.T) {
	site := coordinatortest.New(t, coordinatortest.MemberLogin)
	f := relayFiles(filepath.Join(t.TempDir(), "relay-1"))
	c, _, err := member.Login(site.Ctx(), f, site.Addr, site.Invite("relay-1", pb.Role_ROLE_RELAY), mesh.HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h, id := c.Host(), c.Site()
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
		changed, err := member.Learn(f, h, id, c.raw)
		if err != nil || changed != c.changed {
			t.Errorf("%s: changed %v, %v; want %v", c.name, changed, err, c.changed)
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
