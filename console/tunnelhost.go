package console

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

// A peer behind jumpoints has addresses only on the jumpoints' network.
// The console reaches it with a second libp2p host, the tunnel host: the
// technician's key again, and a TCP dialer (tunnel.Dialer) that carries
// each connection to one of the peer's TCP addresses through a tunnel to a
// jumpoint, the tunnel's open carrying the jump grant the jumpoint checks.
// The tunnels' streams run on the console's main host, which reaches the
// jumpoint as it reaches any member: directly, or through the site's
// relays. The console's libp2p connection to the peer runs inside the
// tunnel, secured end to end: the jumpoint carries ciphertext.
//
// A second host, not the main one with a tunnel dialer: a custom TCP
// dialer gives up port reuse, which the main host's hole punching needs.
// The tunnel host dials nothing but the peer's addresses (any other is
// refused, never dialed directly), does not listen, and is closed with the
// session (Jump.Close).

// jumpointRef is a jumpoint as a jump names it.
type jumpointRef struct {
	id    peer.ID
	name  string
	addrs []ma.Multiaddr
}

func jumpointRefs(refs []*pb.JumpointRef) ([]jumpointRef, error) {
	out := make([]jumpointRef, 0, len(refs))
	for _, r := range refs {
		id, err := peer.IDFromBytes(r.GetId())
		if err != nil {
			return nil, catalog.Errorf(catalog.CodeProtocol, "(jumpoint ID from the coordinator: %v)", err)
		}
		out = append(out, jumpointRef{id: id, name: r.GetName(), addrs: mesh.DecodeAddrs(r.GetAddrs())})
	}
	return out, nil
}

// tunnelHost is a console's host for one peer behind jumpoints.
type tunnelHost struct {
	host.Host
	main      host.Host
	jumpoints []jumpointRef
	// targets are the peer's TCP host:port addresses: the only ones the
	// tunnel host dials.
	targets map[string]bool
	dialer  *tunnel.Dialer

	mu    sync.Mutex
	grant *pb.JumpGrant
	// via is the jumpoint carrying each tunnelled connection, by the
	// peer's address it reaches.
	via map[string]peer.ID
}

// newTunnelHost starts a tunnel host for the peer at addrs behind
// jumpoints, with main's key.
func newTunnelHost(main host.Host, addrs []ma.Multiaddr, jumpoints []jumpointRef, g *pb.JumpGrant) (*tunnelHost, error) {
	t := &tunnelHost{main: main, jumpoints: jumpoints, targets: map[string]bool{}, grant: g, via: map[string]peer.ID{}}
	for _, a := range addrs {
		if network, hostport, err := manet.DialArgs(a); err == nil && !mesh.IsCircuit(a) && (network == "tcp" || network == "tcp4" || network == "tcp6") {
			t.targets[hostport] = true
		}
	}
	if len(t.targets) == 0 {
		return nil, catalog.Errorf(catalog.CodeConnectTimeout, "(the peer behind a jumpoint has no TCP address: %v)", addrs)
	}
	dropLoopback(t.targets)
	t.dialer = tunnel.NewDialer(t.route)
	t.dialer.SetHost(main)
	key := main.Peerstore().PrivKey(main.ID())
	if key == nil {
		return nil, fmt.Errorf("tunnel host: the console's key is not in its host's peerstore")
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, TCPDialer: t.ForAddr})
	if err != nil {
		return nil, err
	}
	t.Host = h
	return t, nil
}

// dropLoopback leaves the peer's loopback addresses out when it has
// others: a jumpoint reaches the peer on their network, and refuses (and
// counts) a tunnel to the peer's 127.0.0.1, which only a jumpoint on the
// peer's own host could use.
func dropLoopback(targets map[string]bool) {
	loop := map[string]bool{}
	for hp := range targets {
		if ap, err := netip.ParseAddrPort(hp); err == nil && ap.Addr().IsLoopback() {
			loop[hp] = true
		}
	}
	if len(loop) == len(targets) {
		return
	}
	for hp := range loop {
		delete(targets, hp)
	}
}

// ForAddr is the tunnel host's TCP dialer.
func (t *tunnelHost) ForAddr(ma.Multiaddr) (tcp.ContextDialer, error) { return t, nil }

// DialContext dials through a jumpoint and notes which one carries the
// connection, for the path.
func (t *tunnelHost) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := t.dialer.DialContext(ctx, network, address)
	if tc, ok := c.(*tunnel.Conn); ok && err == nil {
		t.mu.Lock()
		t.via[address] = tc.Conn().RemotePeer()
		t.mu.Unlock()
	}
	return c, err
}

// route sends the peer's addresses through the jumpoints (those the main
// host is connected to first) with the grant; anything else is refused.
func (t *tunnelHost) route(address string) ([]peer.ID, *pb.TunnelOpen, bool) {
	if !t.targets[address] {
		return nil, &pb.TunnelOpen{}, true
	}
	var up, rest []peer.ID
	for _, j := range t.jumpoints {
		if t.main.Network().Connectedness(j.id) == network.Connected {
			up = append(up, j.id)
		} else {
			rest = append(rest, j.id)
		}
	}
	t.mu.Lock()
	g := t.grant
	t.mu.Unlock()
	return append(up, rest...), &pb.TunnelOpen{Grant: g}, true
}

// reachJumpoint connects the main host to the first jumpoint that answers,
// directly or through the site's relays. It dials every jumpoint at once:
// one after another, a dead first jumpoint held the jump for the whole
// connect timeout (15 s, and a DHT lookup after it) before the next was
// tried — the lab's first jump after a jumpoint died took 15–31 s.
func (t *tunnelHost) reachJumpoint(ctx context.Context, c *Client, relays []ma.Multiaddr, forceRelay bool) error {
	dctx, cancel := context.WithCancel(ctx)
	defer cancel() // the other dials stop once one jumpoint answers
	type result struct {
		j   jumpointRef
		err error
	}
	results := make(chan result, len(t.jumpoints))
	for _, j := range t.jumpoints {
		c.host.Peerstore().AddAddrs(j.id, dialAddrs(j.id, j.addrs, relays, forceRelay), peerstore.AddressTTL)
		go func() { results <- result{j, c.Connect(dctx, j.id, j.addrs, relays, forceRelay)} }()
	}
	var errs []error
	for range t.jumpoints {
		r := <-results
		if r.err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s (%s): %w", r.j.name, r.j.id, r.err))
	}
	if err := ctx.Err(); err != nil {
		return catalog.Errorf(catalog.CodeJumpointUnreachable, "(%v: %v)", err, errs)
	}
	return catalog.Errorf(catalog.CodeJumpointUnreachable, "(%v)", errs)
}

// classify is the path of a connection of the tunnel host: through the
// jumpoint that carried it.
func (t *tunnelHost) classify(c network.Conn) Path {
	p := Path{Kind: PathJumpoint, Addr: c.RemoteMultiaddr(), Transport: "tcp"}
	if _, hostport, err := manet.DialArgs(c.RemoteMultiaddr()); err == nil {
		t.mu.Lock()
		p.Relay = t.via[hostport]
		t.mu.Unlock()
	}
	for _, j := range t.jumpoints {
		if j.id == p.Relay {
			p.Jumpoint = j.name
		}
	}
	return p
}
