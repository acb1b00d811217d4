package jumpoint

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"

	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

// Resources are every bound a jumpoint puts on what it spends, in one
// place so an operator can see and tune them (`jumpmesh jumpoint run
// --help` has a flag for each). A zero field means its DefaultResources
// value.
//
// A tunnel is not limited in time or in bytes carried: it carries a whole
// session (a shell, a copy, a port forward) or a peer's connection to its
// coordinator, which lasts as long as the peer runs. What the jumpoint
// bounds is how many it carries at once and, if the operator asks, how
// fast each one goes.
type Resources struct {
	// MaxTunnels is how many tunnels the jumpoint carries at once, all
	// callers together. Each open tunnel holds one TCP connection, one
	// libp2p stream and two goroutines with a 32 KiB copy buffer each.
	// Every peer behind the jumpoint holds one for its coordinator
	// connection while it runs, so this must exceed MaxPeers.
	MaxTunnels int
	// MaxTunnelsPerPeer bounds the tunnels one caller holds (a console
	// reaching many peers behind the jumpoint, a peer reconnecting). The
	// resource manager enforces it on the tunnel protocol's inbound
	// streams.
	MaxTunnelsPerPeer int
	// MaxPeers is how many libp2p connections the jumpoint keeps (the
	// peers behind it and the consoles reaching them) before its
	// connection manager closes the least useful; the peers and
	// technicians of the ACL are protected from that. The resource
	// manager allows a little more so the connection manager, not a hard
	// refusal, acts first.
	MaxPeers int
	// DialTimeout bounds the jumpoint's TCP connect to a tunnel's target.
	DialTimeout time.Duration
	// MaxTunnelRate bounds each direction of every tunnel, in bytes per
	// second (a token bucket with a burst of 32 KiB), so one technician's
	// bulk copy cannot take a thin uplink from everyone else. 0, the
	// default, is unlimited: the end-to-end flow control of what the
	// tunnel carries then sets the pace.
	MaxTunnelRate int64
}

// DefaultResources are the bounds of a jumpoint sized for a few thousand
// peers behind it on a small machine: 8,192 tunnels hold at most 512 MiB
// of copy buffers, and only while they carry data.
func DefaultResources() Resources {
	return Resources{
		MaxTunnels:        8192,
		MaxTunnelsPerPeer: 256,
		MaxPeers:          6144,
		DialTimeout:       tunnel.OpenTimeout,
	}
}

// withDefaults fills each zero field from DefaultResources.
func (r Resources) withDefaults() Resources {
	d := DefaultResources()
	setInt := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	setInt(&r.MaxTunnels, d.MaxTunnels)
	setInt(&r.MaxTunnelsPerPeer, d.MaxTunnelsPerPeer)
	setInt(&r.MaxPeers, d.MaxPeers)
	if r.DialTimeout == 0 {
		r.DialTimeout = d.DialTimeout
	}
	return r
}

// validate checks a Resources after withDefaults.
func (r Resources) validate() error {
	switch {
	case r.MaxTunnels < 0 || r.MaxTunnelsPerPeer < 0 || r.MaxPeers < 0 || r.MaxTunnelRate < 0:
		return fmt.Errorf("jumpoint tunnel, peer and rate limits must not be negative")
	case r.MaxTunnelsPerPeer > r.MaxTunnels:
		return fmt.Errorf("jumpoint tunnels per peer (%d) above the tunnels in all (%d)", r.MaxTunnelsPerPeer, r.MaxTunnels)
	case r.DialTimeout < 100*time.Millisecond || r.DialTimeout > 5*time.Minute:
		return fmt.Errorf("jumpoint dial timeout %s: use 100ms to 5m", r.DialTimeout)
	}
	return nil
}

// managers are the libp2p resource and connection managers of the
// jumpoint's host: go-libp2p's, scaled to the machine, with connections
// and the tunnel protocol's streams widened to these Resources. Left at
// go-libp2p's defaults, a jumpoint would stop at a few hundred peers
// behind it, and at 8 connections per IPv4 address (consoles behind one
// office NAT).
func (r Resources) managers() (network.ResourceManager, *connmgr.BasicConnMgr, error) {
	scaling := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&scaling)
	base := scaling.AutoScale()

	// Besides its tunnels, every connection carries identify and ping
	// streams now and then.
	const otherStreams = 4
	conns := rcmgr.LimitVal(r.MaxPeers + r.MaxPeers/8 + 64)
	handshakes := rcmgr.LimitVal(r.MaxPeers/4 + 64)
	streams := r.MaxTunnels + otherStreams*(r.MaxPeers+r.MaxPeers/8+64)
	tunnels := rcmgr.ResourceLimits{
		StreamsInbound: rcmgr.LimitVal(r.MaxTunnels + 64),
		Streams:        rcmgr.LimitVal(r.MaxTunnels + 64),
	}
	perPeer := rcmgr.ResourceLimits{
		StreamsInbound: rcmgr.LimitVal(r.MaxTunnelsPerPeer),
		Streams:        rcmgr.LimitVal(r.MaxTunnelsPerPeer),
	}
	partial := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{ConnsInbound: conns, Conns: conns,
			StreamsInbound: rcmgr.LimitVal(streams), Streams: rcmgr.LimitVal(2 * streams)},
		// Connections in their handshake are transient: libp2p's default
		// (32 inbound, 16 more per GiB of the scaled memory) reset most
		// of 300 peers registering at once through a jumpoint
		// (BenchmarkJumpointRegistrations in sim/scale), and every peer
		// behind a jumpoint that restarts reconnects at once.
		Transient: rcmgr.ResourceLimits{StreamsInbound: rcmgr.LimitVal(r.MaxTunnels/4 + 256), Streams: rcmgr.LimitVal(r.MaxTunnels/4 + 256),
			ConnsInbound: handshakes, Conns: handshakes, FD: handshakes},
		// A console behind many tunnels, a peer that reconnects: the peer
		// scope holds the tunnels plus the other streams.
		PeerDefault: rcmgr.ResourceLimits{StreamsInbound: rcmgr.LimitVal(r.MaxTunnelsPerPeer + 64),
			Streams: rcmgr.LimitVal(2 * (r.MaxTunnelsPerPeer + 64))},
		Protocol:     map[protocol.ID]rcmgr.ResourceLimits{tunnel.Protocol: tunnels},
		ProtocolPeer: map[protocol.ID]rcmgr.ResourceLimits{tunnel.Protocol: perPeer},
	}
	// Consoles behind one NAT share an address: lift libp2p's cap of 8
	// connections per IPv4 address (the ACL decides who may open tunnels).
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(partial.Build(base)),
		rcmgr.WithLimitPerSubnet(
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: r.MaxPeers}},
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 56, ConnCount: r.MaxPeers}}))
	if err != nil {
		return nil, nil, fmt.Errorf("jumpoint resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(r.MaxPeers*7/8, r.MaxPeers, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		rm.Close()
		return nil, nil, fmt.Errorf("jumpoint connection manager: %w", err)
	}
	return rm, cm, nil
}
