package peer

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

// A peer whose installer key names jumpoints sits on a network with no
// route to the site. Its host dials every TCP address through a tunnel
// (mesh/tunnel) to one of its jumpoints, except the jumpoints' own
// addresses, which are on its network and dialed directly; QUIC is left
// out, so nothing bypasses the tunnels. It makes no relay reservations and
// runs no puncher: consoles reach it through the jumpoint, which dials the
// TCP addresses it listens on. A jumpoint whose key entry has a link port
// is reached over a peer link (a plain TCP connection proven by the host's
// key, tunnel.DialLink), with no libp2p connection to it; one without, by
// a stream over a libp2p connection to it.
//
// Several jumpoints serve the same peers. The route offers them in the
// order the key names them, except that one the peer is connected to comes
// first and one whose connection was lost, or whose tunnel could not be
// opened, goes last: libp2p's TCP transport gives a whole dial 5 s, so a
// dead first jumpoint that swallows the attempt must not be first again.
// A jumpoint that vanishes without closing its connection (its host lost
// power) is noticed by pings on a libp2p connection (jumpointPingFailures
// failed pings in a row close it) and by TCP keepalive on a link
// (tunnel.LinkKeepIdle and what follows): its tunnels and the coordinator
// session inside end, and the reconnect goes through the next jumpoint —
// well within the 30 s a peer may be away when one of two jumpoints dies.

// Liveness of the jumpoint connections. Wall time, not the daemon's
// clock: they measure the network, not a horizon of the site.
const (
	jumpointPingEvery    = 4 * time.Second
	jumpointPingTimeout  = 4 * time.Second
	jumpointPingFailures = 2
)

// jumpointRoute is a peer's way to the site through its jumpoints.
type jumpointRoute struct {
	refs []peer.AddrInfo // in the key's order
	// own are the jumpoints' TCP host:port addresses: dialed directly.
	own map[string]bool
	// links are each jumpoint's peer-link addresses (host:port), those on
	// a network of this host first; none for a jumpoint whose key entry
	// has no link port (it is reached over a libp2p connection).
	links        map[peer.ID][]string
	installerKey string
	dialer       *tunnel.Dialer
	log          *slog.Logger

	mu       sync.Mutex
	h        host.Host
	enrolled func() bool
	// lost is when each jumpoint last lost its connection or failed a
	// tunnel; the route offers such jumpoints last, oldest loss first.
	lost map[peer.ID]time.Time
	// quiet: the peer closed its connections to go passive; those closes
	// are not jumpoints lost.
	quiet atomic.Bool
}

// newJumpointRoute reads the config's jumpoints.
func newJumpointRoute(c *Config, log *slog.Logger) (*jumpointRoute, error) {
	r := &jumpointRoute{own: map[string]bool{}, links: map[peer.ID][]string{}, installerKey: c.InstallerKey, log: log, lost: map[peer.ID]time.Time{},
		enrolled: func() bool { return false }}
	for _, j := range c.Jumpoints {
		id, err := peer.Decode(j.ID)
		if err != nil {
			return nil, fmt.Errorf("config: jumpoint %q: %w", j.ID, err)
		}
		addrs, err := mesh.ParseMultiaddrs(j.Addrs)
		if err != nil {
			return nil, fmt.Errorf("config: jumpoint %s: %w", id, err)
		}
		for _, a := range addrs {
			if network, hostport, err := manet.DialArgs(a); err == nil && isTCP(network) && !mesh.IsCircuit(a) {
				r.own[hostport] = true
			}
		}
		r.refs = append(r.refs, peer.AddrInfo{ID: id, Addrs: addrs})
		if j.PeerPort > 0 && j.PeerPort <= 65535 {
			r.links[id] = tunnel.LinkAddrs(addrs, j.PeerPort, tunnel.LocalPrefixes())
		}
	}
	r.dialer = tunnel.NewDialer(r.route)
	return r, nil
}

func isTCP(network string) bool { return network == "tcp" || network == "tcp4" || network == "tcp6" }

// setHost gives the route the peer's host: it opens the tunnels and knows
// where the jumpoints are.
func (r *jumpointRoute) setHost(h host.Host, enrolled func() bool) {
	r.mu.Lock()
	r.h, r.enrolled = h, enrolled
	r.mu.Unlock()
	r.dialer.SetHost(h)
	r.dialer.SetLinks(&tunnel.Links{Addrs: func(j peer.ID) []string { return r.links[j] }, Key: h.Peerstore().PrivKey(h.ID()),
		Listen: func() []uint32 { return tcpPorts(h.Addrs()) }})
	for _, j := range r.refs {
		h.Peerstore().AddAddrs(j.ID, j.Addrs, peerstore.PermanentAddrTTL)
	}
}

// ForAddr is the host's TCP dialer (mesh.HostConfig.TCPDialer).
func (r *jumpointRoute) ForAddr(ma.Multiaddr) (tcp.ContextDialer, error) { return r, nil }

// DialContext dials through the tunnel dialer; when no jumpoint could
// carry the dial, the first one offered goes last next time.
func (r *jumpointRoute) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	first := r.order()
	c, err := r.dialer.DialContext(ctx, network, address)
	if err != nil && !r.own[address] && len(first) > 0 && (catalog.HasCode(err, catalog.CodeJumpointUnreachable) || ctx.Err() != nil) {
		r.markLost(first[0], "no tunnel", err)
	}
	return c, err
}

// route is the tunnel.Route: the jumpoints' own addresses directly,
// everything else through them. Until the coordinator welcomed the peer
// the open carries the installer key (the jumpoint lets an unknown host
// reach the coordinator with a key naming it); afterwards the jumpoint
// knows the peer from its ACL.
func (r *jumpointRoute) route(address string) ([]peer.ID, *pb.TunnelOpen, bool) {
	if r.own[address] {
		return nil, nil, false
	}
	r.mu.Lock()
	enrolled := r.enrolled
	r.mu.Unlock()
	open := &pb.TunnelOpen{}
	if !enrolled() {
		open.InstallerKey = r.installerKey
	}
	return r.order(), open, true
}

// order is the jumpoints in the order to try them now: connected ones,
// then those never lost (the key's order), then those lost, oldest first.
func (r *jumpointRoute) order() []peer.ID {
	r.mu.Lock()
	defer r.mu.Unlock()
	rank := func(id peer.ID) (int, time.Time) {
		if r.h != nil && r.h.Network().Connectedness(id) == network.Connected {
			return 0, time.Time{}
		}
		if t, ok := r.lost[id]; ok {
			return 2, t
		}
		return 1, time.Time{}
	}
	out := make([]peer.ID, 0, len(r.refs))
	for _, j := range r.refs {
		out = append(out, j.ID)
	}
	slices.SortStableFunc(out, func(a, b peer.ID) int {
		ra, ta := rank(a)
		rb, tb := rank(b)
		if ra != rb {
			return ra - rb
		}
		return ta.Compare(tb)
	})
	return out
}

func (r *jumpointRoute) isJumpoint(id peer.ID) bool {
	return slices.ContainsFunc(r.refs, func(i peer.AddrInfo) bool { return i.ID == id })
}

func (r *jumpointRoute) markLost(id peer.ID, why string, err error) {
	r.mu.Lock()
	r.lost[id] = time.Now()
	r.mu.Unlock()
	r.log.Info("jumpoint lost; the next one goes first", "jumpoint", id, "why", why, "error", err)
}

// run watches the jumpoint connections until ctx ends: a closed one marks
// its jumpoint lost, and one that stops answering pings is closed.
func (r *jumpointRoute) run(ctx context.Context) {
	h := r.h
	n := &network.NotifyBundle{DisconnectedF: func(nw network.Network, c network.Conn) {
		if id := c.RemotePeer(); r.isJumpoint(id) && !r.quiet.Load() && nw.Connectedness(id) != network.Connected {
			r.markLost(id, "connection closed", nil)
		}
	}}
	h.Network().Notify(n)
	defer h.Network().StopNotify(n)
	failures := map[peer.ID]int{}
	t := time.NewTicker(jumpointPingEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, j := range r.refs {
			if h.Network().Connectedness(j.ID) != network.Connected {
				delete(failures, j.ID)
				continue
			}
			if err := pingOnce(ctx, h, j.ID); err != nil && ctx.Err() == nil {
				failures[j.ID]++
				if failures[j.ID] >= jumpointPingFailures {
					r.markLost(j.ID, "no answer to pings", err)
					_ = h.Network().ClosePeer(j.ID)
					delete(failures, j.ID)
				}
				continue
			}
			delete(failures, j.ID)
		}
	}
}

func pingOnce(ctx context.Context, h host.Host, id peer.ID) error {
	ctx, cancel := context.WithTimeout(ctx, jumpointPingTimeout)
	defer cancel()
	select {
	case res, ok := <-ping.Ping(ctx, h, id):
		if !ok {
			return ctx.Err()
		}
		return res.Error
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tcpListen keeps the TCP addresses of listen: a peer behind jumpoints has
// no QUIC and no relay, and is reached by its jumpoints over TCP.
func tcpListen(listen []ma.Multiaddr) ([]ma.Multiaddr, error) {
	var out []ma.Multiaddr
	for _, a := range listen {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil && !mesh.IsCircuit(a) {
			out = append(out, a)
		}
	}
	if len(out) == 0 {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "A peer behind a jumpoint listens on TCP, and no --listen address is TCP (%v).", listen)
	}
	return out, nil
}

// tcpPorts are the TCP ports of addrs (not relayed), each once.
func tcpPorts(addrs []ma.Multiaddr) []uint32 {
	var out []uint32
	for _, a := range addrs {
		if mesh.IsCircuit(a) {
			continue
		}
		if p, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			if n, err := strconv.Atoi(p); err == nil && n > 0 && !slices.Contains(out, uint32(n)) {
				out = append(out, uint32(n))
			}
		}
	}
	return out
}
