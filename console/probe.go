package console

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/probe"
	"github.com/jumpmesh/jumpmesh/mesh/punch"
)

// The console's side of port-mapping probing (mesh/probe): a peer whose
// punch cannot open the pair's NATs asks, over the relayed connection
// this console opened to it, to probe. The console answers only a peer it
// chose to reach (Client.Connect recorded it; probe.Respond also refuses
// a connection the console did not open), shows a jump grant for that
// peer (one it holds, or a fresh one: `ping` holds none), and sends
// packets only towards the IPs the coordinator handed it for the peer.

// probeTargets are the peers this console reached, with what the
// coordinator said of them.
type probeTargets struct {
	mu      sync.Mutex
	targets map[peer.ID]*probeTarget
}

type probeTarget struct {
	ips    []netip.Addr // of the direct addresses the coordinator handed
	relays []peer.ID
	grant  *pb.JumpGrant
	result *probe.Result // the last exchange
}

// noteTarget records what the coordinator handed for id before Connect.
func (c *Client) noteTarget(id peer.ID, direct, relays []ma.Multiaddr) {
	c.probing.mu.Lock()
	defer c.probing.mu.Unlock()
	t := c.probing.target(id)
	for _, a := range direct {
		if ip, err := addrIP(a); err == nil && !slices.Contains(t.ips, ip) {
			t.ips = append(t.ips, ip)
		}
	}
	for _, r := range relays {
		if info, err := peer.AddrInfoFromP2pAddr(r); err == nil && !slices.Contains(t.relays, info.ID) {
			t.relays = append(t.relays, info.ID)
		}
	}
}

// notePeerIP records the IP the coordinator sees id's connection come
// from (PeerView.peer_ip, JumpResponse.peer_ip).
func (c *Client) notePeerIP(id peer.ID, ip string) {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return
	}
	c.probing.mu.Lock()
	defer c.probing.mu.Unlock()
	if t := c.probing.target(id); !slices.Contains(t.ips, addr.Unmap()) {
		t.ips = append(t.ips, addr.Unmap())
	}
}

// noteGrant records a grant the coordinator issued for id.
func (c *Client) noteGrant(id peer.ID, g *pb.JumpGrant) {
	if g == nil {
		return
	}
	c.probing.mu.Lock()
	c.probing.target(id).grant = g
	c.probing.mu.Unlock()
}

// ProbeResult is the last probe exchange with id, if one ran.
func (c *Client) ProbeResult(id peer.ID) (probe.Result, bool) {
	c.probing.mu.Lock()
	defer c.probing.mu.Unlock()
	if t := c.probing.targets[id]; t != nil && t.result != nil {
		return *t.result, true
	}
	return probe.Result{}, false
}

func (pt *probeTargets) target(id peer.ID) *probeTarget {
	if pt.targets == nil {
		pt.targets = map[peer.ID]*probeTarget{}
	}
	t := pt.targets[id]
	if t == nil {
		t = &probeTarget{}
		pt.targets[id] = t
	}
	return t
}

// serveProbe answers a peer's probe exchange.
func (c *Client) serveProbe(s network.Stream) {
	defer s.Close()
	remote := s.Conn().RemotePeer()
	c.probing.mu.Lock()
	t := c.probing.targets[remote]
	var ips []netip.Addr
	var relays []peer.ID
	var g *pb.JumpGrant
	if t != nil {
		ips, relays, g = slices.Clone(t.ips), slices.Clone(t.relays), t.grant
	}
	c.probing.mu.Unlock()
	if t == nil {
		s.Reset() // not a peer this console reached
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), probe.Timeout+probeGrantWait)
	defer cancel()
	site := c.Site()
	side := &pb.ProbeSide{}
	if flows, err := punch.ObserveQUIC(ctx, c.host, func(id peer.ID) bool { return id == site || slices.Contains(relays, id) }); err == nil {
		side = punch.UDPSide(flows, false)
	}
	l := probe.Local{
		Host: c.host, Side: side,
		UDP:     func(nw string) (net.PacketConn, error) { return mesh.SharedUDP(c.host, nw) },
		Allowed: func(ip netip.Addr) bool { return slices.Contains(ips, ip.Unmap()) },
		Grant:   c.grantToShow(ctx, remote, g),
	}
	res, _ := probe.Respond(ctx, s, l)
	c.probing.mu.Lock()
	c.probing.target(remote).result = &res
	c.probing.mu.Unlock()
}

// grantToShow is a grant for remote to show in a probe answer: g while it
// is fresh, else a new one from the coordinator (nil when it refuses).
func (c *Client) grantToShow(ctx context.Context, remote peer.ID, g *pb.JumpGrant) *pb.JumpGrant {
	if g != nil && grantFresh(g) {
		return g
	}
	ctx, cancel := context.WithTimeout(ctx, probeGrantWait)
	defer cancel()
	j, err := c.JumpFor(ctx, remote.String(), Need{})
	if err != nil {
		return nil
	}
	return j.Grant
}

// probeGrantWait bounds asking the coordinator for a grant to show.
const probeGrantWait = 3 * time.Second

// grantFresh reports whether g has more than a few seconds left before it
// expires (a peer refuses an expired grant).
func grantFresh(g *pb.JumpGrant) bool {
	body, err := grant.Parse(g)
	if err != nil {
		return false
	}
	return time.Until(time.Unix(body.GetExpiresUnix(), 0)) > 5*time.Second
}

// addrIP is the IP of a /ip4 or /ip6 multiaddr.
func addrIP(a ma.Multiaddr) (netip.Addr, error) {
	ip, err := manet.ToIP(a)
	if err != nil {
		return netip.Addr{}, err
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, fmt.Errorf("%v: no IP", a)
	}
	return addr.Unmap(), nil
}
