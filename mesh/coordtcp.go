package mesh

import (
	"slices"
	"sync/atomic"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// CoordinatorOverTCP is the host option that keeps a peer's or a console's
// connections to its coordinator (site) on TCP when the coordinator offers
// TCP: the swarm may not dial the site's other addresses.
//
// Peers. The daemon dials only the site's TCP addresses (siteAddrInfo), but libp2p
// dials every address it knows of a peer, and identify tells it the
// coordinator's QUIC addresses during the first session. After a
// coordinator restart, the reconnection then raced QUIC against TCP with
// QUIC first (libp2p's dial ranker), and QUIC won: a storm of reconnecting
// peers came back over QUIC, whose handshakes the coordinator's handshake
// gate does not bound (coordinator/handshakes.go: they run in quic-go's
// packet loop), at 1.6 × a TCP registration's CPU; and a session over QUIC
// whose close was lost in the coordinator's shutdown was noticed only at
// QUIC's idle timeout. TestSessionStaysOnTCPAfterCoordinatorRestart.
//
// Consoles (mesh/member). Since consoles learn every coordinator address
// (QUIC ones too, 6a76533) their connection to the coordinator went QUIC
// first as well, and identify then told them no TCP mapping of their own
// from the coordinator: libp2p's hole-punching service offered a peer
// behind a NAT that drops UDP no TCP address it could punch towards, and
// such pairs stayed relayed (the lab's NAT grid, cgnat console ×
// udp-blocked peer). A console reaches its coordinator and relays over
// TCP (punch.QUICOffer learns its QUIC mapping aside).
//
// A site that offers no TCP address is reached over what it offers. The
// fleet of sim/scale uses the same option, so the storm benchmarks measure
// what daemons do.
func CoordinatorOverTCP(site peer.AddrInfo) libp2p.Option {
	return NewCoordinatorDials(site).Option()
}

// CoordinatorDials is CoordinatorOverTCP with a handle, for members: while
// they connect, their dials to the coordinator may be narrowed to its
// members' lane (coordinator/lane.go, mesh/member), so that the lane is
// tried alone first.
type CoordinatorDials struct{ g *siteTransportGater }

// NewCoordinatorDials keeps a host's dials to site on TCP when it offers
// TCP (CoordinatorOverTCP).
func NewCoordinatorDials(site peer.AddrInfo) *CoordinatorDials {
	g := &siteTransportGater{site: site.ID}
	for _, a := range site.Addrs {
		if isTCPAddr(a) {
			g.tcpOnly = true
		}
	}
	return &CoordinatorDials{g: g}
}

// Option is the host option.
func (d *CoordinatorDials) Option() libp2p.Option { return libp2p.ConnectionGater(d.g) }

// Only narrows the dials to the site to addrs until restore is called.
func (d *CoordinatorDials) Only(addrs []ma.Multiaddr) (restore func()) {
	only := slices.Clone(addrs)
	d.g.only.Store(&only)
	return func() { d.g.only.CompareAndSwap(&only, nil) }
}

// siteTransportGater refuses dials to the site's non-TCP addresses when it
// offers TCP, and, while only is set, to any address but those. Everything
// else passes: it only narrows this host's own dials to its coordinator.
type siteTransportGater struct {
	site    peer.ID
	tcpOnly bool
	only    atomic.Pointer[[]ma.Multiaddr]
}

func (g *siteTransportGater) InterceptPeerDial(peer.ID) bool { return true }

func (g *siteTransportGater) InterceptAddrDial(p peer.ID, a ma.Multiaddr) bool {
	if p != g.site {
		return true
	}
	if only := g.only.Load(); only != nil {
		return slices.ContainsFunc(*only, a.Equal)
	}
	return !g.tcpOnly || isTCPAddr(a)
}

func (g *siteTransportGater) InterceptAccept(network.ConnMultiaddrs) bool { return true }

func (g *siteTransportGater) InterceptSecured(network.Direction, peer.ID, network.ConnMultiaddrs) bool {
	return true
}

func (g *siteTransportGater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) {
	return true, 0
}

func isTCPAddr(a ma.Multiaddr) bool {
	_, err := a.ValueForProtocol(ma.P_TCP)
	return err == nil
}
