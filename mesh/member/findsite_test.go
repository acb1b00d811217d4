package member_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/dht"
	"github.com/jumpmesh/jumpmesh/mesh/member"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestMemberFindsTheSiteThroughItsRelay (issue 16 part 2: "the private
// DHT finds the others"): a technician's config names only an address
// where no coordinator listens any more (the site moved while the console
// was not used) and the relay its last jump was handed. Without the relay
// the call is coordinator_down; with it, the console asks the relay (a
// server of the site's DHT that knows where the coordinator is), reaches
// the coordinator and keeps the addresses the coordinator's own answer
// carried.
func TestMemberFindsTheSiteThroughItsRelay(t *testing.T) {
	site := coordinatortest.New(t, coordinatortest.MemberLogin)
	site.User("tech-1", pb.Role_ROLE_TECHNICIAN)
	f := coordinatortest.MemberFiles(site.Home("tech-1"))
	siteID := site.Coord.ID()
	gone := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", coordinatortest.FreePort(t, "tcp"), siteID)

	relay := dhtServer(t, siteID, site.Coord.LoginAddrs())
	rewriteConfig(t, f, func(c *member.Config) { c.Coordinator, c.Relays, c.Lane = []string{gone}, nil, nil })
	_, err := whoami(t, f, 10*time.Second)
	coordinatortest.WantCode(t, err, catalog.CodeCoordinatorDown)

	rewriteConfig(t, f, func(c *member.Config) { c.Relays = []string{p2pAddr(relay)} })
	r, err := whoami(t, f, 20*time.Second)
	if err != nil || r.GetUser().GetUser().GetName() != "tech-1" {
		t.Fatalf("whoami through the relay's answer: %v, %v", r, err)
	}
	cfg, err := f.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Coordinator) < 2 || cfg.Coordinator[0] != gone {
		t.Fatalf("kept coordinators %v: want %s first and the coordinator's answer after it", cfg.Coordinator, gone)
	}
	for _, a := range site.Coord.LoginAddrs() {
		if !slices.Contains(cfg.Coordinator, a.String()) {
			t.Errorf("the coordinator's address %s was not kept: %v", a, cfg.Coordinator)
		}
	}
}

// TestLyingRelayCannotMisleadAMember: the relay a console asks is
// compromised, or the technician's config file names one of someone
// else's: it answers with an impostor's address (another key) and a
// silent one. The console dials both, takes neither for the site (the
// handshake checks the site's ID), says coordinator_down, and its config
// file is as it was: nothing a relay answers is kept.
func TestLyingRelayCannotMisleadAMember(t *testing.T) {
	site := coordinatortest.New(t, coordinatortest.MemberLogin)
	site.User("tech-1", pb.Role_ROLE_TECHNICIAN)
	f := coordinatortest.MemberFiles(site.Home("tech-1"))
	siteID := site.Coord.ID()
	gone := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", coordinatortest.FreePort(t, "tcp"), siteID)
	impostor := coordinatortest.LoopbackHost(t)
	lies := []ma.Multiaddr{impostor.Addrs()[0], coordinatortest.SilentListener(t)}
	liar := dhtServer(t, siteID, lies)
	rewriteConfig(t, f, func(c *member.Config) {
		c.Coordinator, c.Relays, c.Lane = []string{gone}, []string{p2pAddr(liar)}, nil
	})
	before, err := os.ReadFile(f.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}

	c, err := member.Open(f, mesh.HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	_, err = c.Call(ctx, &pb.Request{Body: &pb.Request_Whoami{Whoami: &pb.Empty{}}})
	coordinatortest.WantCode(t, err, catalog.CodeCoordinatorDown)
	if conns := c.Host().Network().ConnsToPeer(siteID); len(conns) > 0 {
		t.Fatalf("the console holds a connection to the site's ID at %s", conns[0].RemoteMultiaddr())
	}
	if !slices.ContainsFunc(c.Host().Peerstore().Addrs(siteID), lies[0].Equal) {
		t.Fatal("the console never asked the relay (the impostor's address is not in its peerstore): the test tests nothing")
	}
	after, err := os.ReadFile(f.ConfigPath())
	if err != nil {
		t.Fatal(err)
	}
	if string(after) != string(before) {
		t.Fatalf("the config file changed from\n%s\nto\n%s", before, after)
	}
}

// whoami opens the member in f and asks who it is, within d.
func whoami(t *testing.T, f member.Files, d time.Duration) (*pb.Response, error) {
	t.Helper()
	c, err := member.Open(f, mesh.HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return c.Call(ctx, &pb.Request{Body: &pb.Request_Whoami{Whoami: &pb.Empty{}}})
}

// rewriteConfig changes the member's config file as its user could.
func rewriteConfig(t *testing.T, f member.Files, change func(*member.Config)) {
	t.Helper()
	cfg, err := f.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	change(cfg)
	if err := f.SaveConfig(cfg); err != nil {
		t.Fatal(err)
	}
}

// dhtServer is a server of the site's DHT on a host of its own, as a
// relay runs one, that knows the site at addrs.
func dhtServer(t *testing.T, site peer.ID, addrs []ma.Multiaddr) host.Host {
	t.Helper()
	h := coordinatortest.LoopbackHost(t)
	node, err := dht.New(h, dht.Config{Site: site, Infra: func(peer.ID) bool { return false }, Member: func(peer.ID) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	h.Peerstore().AddAddrs(site, addrs, peerstore.PermanentAddrTTL)
	return h
}

// p2pAddr is h's first address with its /p2p/ ID.
func p2pAddr(h host.Host) string { return h.Addrs()[0].String() + "/p2p/" + h.ID().String() }
