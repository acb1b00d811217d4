package tunnel

import (
	"context"
	"errors"
	"net"
	"sync"

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

	mu sync.Mutex
	h  host.Host
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
// the same site would refuse it too.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	jumpoints, open, ok := d.route(address)
	if !ok {
		return d.direct.DialContext(ctx, network, address)
	}
	d.mu.Lock()
	h := d.h
	d.mu.Unlock()
	if h == nil {
		return nil, errors.New("tunnel dialer: no host yet")
	}
	if len(jumpoints) == 0 {
		return nil, catalog.Errorf(catalog.CodeJumpointUnreachable, "(no jumpoint for %s)", address)
	}
	var first error
	for _, j := range jumpoints {
		o := &pb.TunnelOpen{Target: address, Grant: open.GetGrant(), InstallerKey: open.GetInstallerKey()}
		c, err := Dial(ctx, h, j, o)
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
