package dht

import (
	"context"
	"errors"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/jumpmesh/jumpmesh/mesh"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// site is a small site on loopback: a coordinator and a relay as DHT
// servers, and who counts as a member.
type site struct {
	t                  *testing.T
	coord, relay       host.Host
	coordDHT, relayDHT *Node
	mu                 sync.Mutex
	members            map[peer.ID]bool
}

func (s *site) isMember(p peer.ID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.members[p]
}

func newSite(t *testing.T) *site {
	s := &site{t: t, coord: newHost(t), relay: newHost(t), members: map[peer.ID]bool{}}
	s.members[s.coord.ID()], s.members[s.relay.ID()] = true, true
	infra := func(p peer.ID) bool { return p == s.coord.ID() || p == s.relay.ID() }
	s.coordDHT = s.serve(s.coord, Config{Infra: infra})
	s.relayDHT = s.serve(s.relay, Config{Infra: infra, Bootstrap: func() []peer.AddrInfo { return []peer.AddrInfo{info(s.coord)} }})
	return s
}

// serve runs a DHT server on h for the site until the test ends.
func (s *site) serve(h host.Host, cfg Config) *Node {
	s.t.Helper()
	cfg.Site = s.coord.ID()
	if cfg.Member == nil {
		cfg.Member = s.isMember
	}
	n, err := New(h, cfg)
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { n.Close() })
	return n
}

// member is a new host the site counts as a member (a peer or a console).
func (s *site) member() host.Host {
	h := newHost(s.t)
	s.mu.Lock()
	s.members[h.ID()] = true
	s.mu.Unlock()
	return h
}

func (s *site) servers() []peer.AddrInfo { return []peer.AddrInfo{info(s.coord), info(s.relay)} }

func newHost(t *testing.T) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

func info(h host.Host) peer.AddrInfo { return peer.AddrInfo{ID: h.ID(), Addrs: h.Addrs()} }

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return c
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func inTable(n *Node, p peer.ID) bool { return slices.Contains(n.RoutingTable(), p) }

// TestConsoleFindsAPeerOnlyARelayKnows: the peer is connected to the relay
// alone (the coordinator has no address for it); a console that knows both
// servers finds the peer's addresses through the relay and reaches it
// there. The servers have each other in their routing tables.
func TestConsoleFindsAPeerOnlyARelayKnows(t *testing.T) {
	s := newSite(t)
	eventually(t, "the coordinator and the relay in each other's routing table", func() bool {
		return inTable(s.coordDHT, s.relay.ID()) && inTable(s.relayDHT, s.coord.ID())
	})
	p := s.member()
	if err := p.Connect(ctx(t), info(s.relay)); err != nil {
		t.Fatal(err)
	}
	if len(s.coord.Peerstore().Addrs(p.ID())) != 0 {
		t.Fatal("the coordinator knows the peer's addresses; the test wants only the relay to")
	}
	c := s.member()
	found, err := Lookup(ctx(t), c, s.coord.ID(), s.servers(), p.ID())
	if err != nil {
		t.Fatalf("lookup: %v", err)
	}
	if found.ID != p.ID() || len(found.Addrs) == 0 {
		t.Fatalf("found %v", found)
	}
	if !slices.ContainsFunc(found.Addrs, p.Addrs()[0].Equal) {
		t.Fatalf("found %v, want the peer's address %v", found.Addrs, p.Addrs()[0])
	}
	if c.Network().Connectedness(p.ID()) == network.Connected {
		t.Fatal("the lookup dialed the peer; dialing is the caller's")
	}
	if err := c.Connect(ctx(t), found); err != nil {
		t.Fatalf("connecting at the addresses found: %v", err)
	}
}

// TestConsoleFollowsReferrals: a console that knows only the coordinator
// still finds a peer only the relay knows, through the coordinator's
// answer naming the relay.
func TestConsoleFollowsReferrals(t *testing.T) {
	s := newSite(t)
	eventually(t, "the relay in the coordinator's routing table", func() bool { return inTable(s.coordDHT, s.relay.ID()) })
	p := s.member()
	if err := p.Connect(ctx(t), info(s.relay)); err != nil {
		t.Fatal(err)
	}
	c := s.member()
	found, err := Lookup(ctx(t), c, s.coord.ID(), []peer.AddrInfo{info(s.coord)}, p.ID())
	if err != nil || !slices.ContainsFunc(found.Addrs, p.Addrs()[0].Equal) {
		t.Fatalf("lookup through the coordinator alone: %v, %v", found, err)
	}
}

// TestUnknownPeerIsNotFound: a peer no server is connected to is not found,
// and the lookup says so rather than hanging.
func TestUnknownPeerIsNotFound(t *testing.T) {
	s := newSite(t)
	c, p := s.member(), s.member()
	_, err := Lookup(ctx(t), c, s.coord.ID(), s.servers(), p.ID())
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("lookup of a peer nobody knows: %v, want ErrNotFound", err)
	}
}

// TestNoServerReachable: servers that do not answer make ErrNoServers.
func TestNoServerReachable(t *testing.T) {
	c, gone := newHost(t), newHost(t)
	at := info(gone)
	gone.Close()
	_, err := Lookup(ctx(t), c, gone.ID(), []peer.AddrInfo{at}, newHost(t).ID())
	if !errors.Is(err, ErrNoServers) {
		t.Fatalf("lookup with no server: %v, want ErrNoServers", err)
	}
}

// TestStrangerIsShutOut: a host that is not a member, running a DHT server
// with the site's protocol, never enters a server's routing table, and its
// queries are refused; a member's are answered.
func TestStrangerIsShutOut(t *testing.T) {
	s := newSite(t)
	stranger := newHost(t)
	everyone := func(peer.ID) bool { return true }
	s.serve(stranger, Config{Infra: everyone, Member: everyone})
	for _, server := range []host.Host{s.coord, s.relay} {
		if err := stranger.Connect(ctx(t), info(server)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "the relay in the coordinator's routing table", func() bool { return inTable(s.coordDHT, s.relay.ID()) })
	for _, n := range []*Node{s.coordDHT, s.relayDHT} {
		if inTable(n, stranger.ID()) {
			t.Fatalf("a stranger is in a server's routing table: %v", n.RoutingTable())
		}
	}

	proto := s.coordDHT.Protocol()
	for _, server := range []host.Host{s.coord, s.relay} {
		if _, err := findNode(ctx(t), stranger, proto, info(server), server.ID()); err == nil {
			t.Fatalf("a stranger's FIND_NODE to %s was answered", server.ID())
		}
	}
	if _, err := Lookup(ctx(t), stranger, s.coord.ID(), s.servers(), s.member().ID()); !errors.Is(err, ErrNoServers) {
		t.Fatalf("a stranger's lookup: %v, want ErrNoServers", err)
	}

	// The same request from a member is answered.
	closer, err := findNode(ctx(t), s.member(), proto, info(s.coord), s.relay.ID())
	if err != nil {
		t.Fatalf("a member's FIND_NODE: %v", err)
	}
	if !slices.ContainsFunc(closer, func(ai *peer.AddrInfo) bool { return ai.ID == s.relay.ID() }) {
		t.Fatalf("the coordinator answered %v, want the relay among them", closer)
	}
}

// TestSilentServerDoesNotHoldTheLookup: a server that accepts connections
// but never answers costs the lookup AskTimeout, not the caller's deadline;
// the answers of the others are used.
func TestSilentServerDoesNotHoldTheLookup(t *testing.T) {
	s := newSite(t)
	p := s.member()
	if err := p.Connect(ctx(t), info(s.coord)); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent, until the test ends
		}
	}()
	silent := peer.AddrInfo{ID: newHost(t).ID(), Addrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))}}
	start := time.Now()
	found, err := Lookup(ctx(t), s.member(), s.coord.ID(), []peer.AddrInfo{silent, info(s.coord)}, p.ID())
	if err != nil || len(found.Addrs) == 0 {
		t.Fatalf("lookup: %v, %v", found, err)
	}
	// Unbounded, the silent server would hold the lookup until ctx ends;
	// the margin over AskTimeout is for a busy machine.
	if took := time.Since(start); took > 3*AskTimeout {
		t.Fatalf("the lookup took %s with one silent server", took)
	}
}

// TestProtocolIsTheSites: the protocol ID carries the site's ID, so a site's
// DHT never speaks the public one's; Close takes the handler off the host
// and can be called again.
func TestProtocolIsTheSites(t *testing.T) {
	s := newSite(t)
	want := "/jumpmesh/" + s.coord.ID().String() + "/kad/1.0.0"
	if got := string(s.coordDHT.Protocol()); got != want {
		t.Fatalf("protocol %s, want %s", got, want)
	}
	protos := s.coord.Mux().Protocols()
	if !slices.Contains(protos, s.coordDHT.Protocol()) || slices.Contains(protos, "/ipfs/kad/1.0.0") {
		t.Fatalf("coordinator serves %v", protos)
	}
	if err := s.coordDHT.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.coordDHT.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if slices.Contains(s.coord.Mux().Protocols(), s.coordDHT.Protocol()) {
		t.Fatal("the closed node's handler is still on the host")
	}
}

func TestConfigChecks(t *testing.T) {
	h := newHost(t)
	yes := func(peer.ID) bool { return true }
	for _, cfg := range []Config{{Infra: yes, Member: yes}, {Site: h.ID(), Member: yes}, {Site: h.ID(), Infra: yes}} {
		if n, err := New(h, cfg); err == nil {
			n.Close()
			t.Fatalf("New(%+v) accepted", cfg)
		}
	}
}
