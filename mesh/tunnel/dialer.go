package tunnel

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Route says how to reach a TCP address (host:port): through which
// jumpoints, in the order to try them, and with what open message (its
// target is filled in). ok false means: dial it directly.
type Route func(address string) (jumpoints []peer.ID, open *pb.TunnelOpen, ok bool)

// Dialer reaches TCP addresses through jumpoints. Give its ForAddr to
// libp2p's TCP transport (mesh.HostConfig.TCPDialer); the tunnels' streams
// are opened by the host given to SetHost — the same host for a peer
// behind a jumpoint, a console's main host (which may reach the jumpoint
// through a relay) for the console's tunnel host.
type Dialer struct {
	route  Route
	direct net.Dialer

	mu   sync.Mutex
	h    host.Host
	link *Links
}

// Links lets a Dialer reach jumpoints over peer links (link.go) instead of
// streams: a host on the jumpoints' network that need not be reached over
// libp2p by them (a peer behind them).
type Links struct {
	// Addrs are a jumpoint's link addresses (host:port) in the order to
	// try them; none means: use a stream.
	Addrs func(j peer.ID) []string
	// Key proves the caller's identity.
	Key crypto.PrivKey
	// Listen are the TCP ports the caller listens on (LinkAuth.listen_ports).
	Listen func() []uint32
}

// SetLinks makes the dialer use peer links where l has addresses.
func (d *Dialer) SetLinks(l *Links) {
	d.mu.Lock()
	d.link = l
	d.mu.Unlock()
}

// NewDialer returns a dialer that asks route for every address.
func NewDialer(route Route) *Dialer { return &Dialer{route: route} }

// SetHost sets the host that opens tunnel streams.
func (d *Dialer) SetHost(h host.Host) {
	d.mu.Lock()
	d.h = h
	d.mu.Unlock()
}

// ForAddr is a tcp.DialerForAddr.
func (d *Dialer) ForAddr(ma.Multiaddr) (tcp.ContextDialer, error) { return d, nil }

// DialContext dials address through the first jumpoint of its route that
// answers, or directly when it has none. A refusal (a catalog error other
// than an unreachable jumpoint) is returned at once: another jumpoint of
// the same site would refuse it too. Each jumpoint gets a share of the
// time ctx leaves (shareOf), so a dead one does not spend the whole dial.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	jumpoints, open, ok := d.route(address)
	if !ok {
		return d.direct.DialContext(ctx, network, address)
	}
	d.mu.Lock()
	h, links := d.h, d.link
	d.mu.Unlock()
	if h == nil && links == nil {
		return nil, errors.New("tunnel dialer: no host yet")
	}
	if len(jumpoints) == 0 {
		return nil, catalog.Errorf(catalog.CodeJumpointUnreachable, "(no jumpoint for %s)", address)
	}
	return firstOf(ctx, len(jumpoints), func(ctx context.Context, i int) (net.Conn, error) {
		j := jumpoints[i]
		o := &pb.TunnelOpen{Target: address, Grant: open.GetGrant(), InstallerKey: open.GetInstallerKey()}
		if addrs := links.addrs(j); len(addrs) > 0 {
			return dialLinks(ctx, addrs, j, links, o)
		}
		if h != nil {
			return Dial(ctx, h, j, o)
		}
		return nil, catalog.Errorf(catalog.CodeJumpointUnreachable, "(jumpoint %s: no link address and no host)", j)
	})
}

// firstOf tries n ways in order, each with its share of the time ctx
// leaves (shareOf), and returns the first connection. A refusal (a
// catalog error other than an unreachable jumpoint) ends the search at
// once: another way to the same site would be refused too. Otherwise the
// first way's error is returned.
func firstOf(ctx context.Context, n int, try func(ctx context.Context, i int) (net.Conn, error)) (net.Conn, error) {
	var first error
	for i := range n {
		tctx, cancel := shareOf(ctx, n-i)
		c, err := try(tctx, i)
		cancel()
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if !catalog.HasCode(err, catalog.CodeJumpointUnreachable) || ctx.Err() != nil {
			return nil, err
		}
	}
	return nil, first
}

// MaxJumpointWait bounds the time one jumpoint of several gets to answer a
// tunnel dial (its connection, the open and the reply), the last excepted.
// A live jumpoint on a LAN answers in milliseconds; one that accepts TCP
// but never speaks (a hung process, a black-holing firewall) would
// otherwise hold the dial until libp2p's TCP transport gives up on it
// (5 s) and the next jumpoint would never be tried.
const MaxJumpointWait = 3 * time.Second

// shareOf bounds the dial through one of left remaining jumpoints: an
// equal share of the time ctx leaves, at most MaxJumpointWait; the last
// jumpoint gets what is left.
func shareOf(ctx context.Context, left int) (context.Context, context.CancelFunc) {
	if left <= 1 {
		return context.WithCancel(ctx)
	}
	share := MaxJumpointWait
	if dl, ok := ctx.Deadline(); ok {
		share = min(share, time.Until(dl)/time.Duration(left))
	}
	return context.WithTimeout(ctx, share)
}

func (l *Links) addrs(j peer.ID) []string {
	if l == nil || l.Addrs == nil {
		return nil
	}
	return l.Addrs(j)
}

// dialLinks tries j's link addresses in order, each with a share of the
// time left, and returns the first link or the first error.
func dialLinks(ctx context.Context, addrs []string, j peer.ID, l *Links, open *pb.TunnelOpen) (net.Conn, error) {
	var listen []uint32
	if l.Listen != nil {
		listen = l.Listen()
	}
	return firstOf(ctx, len(addrs), func(ctx context.Context, i int) (net.Conn, error) {
		return DialLink(ctx, addrs[i], j, l.Key, listen, open)
	})
}
