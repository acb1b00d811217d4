package relay

import (
	"fmt"
	"math"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	circuitproto "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/proto"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/libp2p/go-libp2p/x/rate"
)

// Resources are every bound a relay puts on what it spends, in one place so
// an operator can see and tune them (`jumpmesh relay run --help` has a flag
// for the ones worth tuning). A zero field means its DefaultResources value,
// except CircuitDuration and CircuitData, whose zero means unlimited.
//
// go-libp2p's own defaults are sized for a public relay that only helps
// strangers hole-punch: 2 minutes and 128 KiB per relayed connection and a
// 2 KiB copy buffer. Our relay carries whole sessions (shells, copies, port
// forwards) for members of one site, so it relays without a time or byte
// cap and with a buffer sized by measurement (see docs/performance.md).
type Resources struct {
	// BufferSize is the copy buffer of each direction of a circuit; a
	// circuit holds its two for its whole life, idle or not. The relay's
	// CPU per GB relayed and relayed throughput as a share of direct, on
	// loopback over TCP, the relay in its own process, all on 2 shared
	// cores (BenchmarkRelayedThroughput, median of 6; docs/performance.md):
	// 2 KiB 1.64 s/GB and 0.16, 16 KiB 0.81 and 0.26, 32 KiB 0.73 and
	// 0.31, 64 KiB 0.70 and 0.28, 256 KiB 0.71 and 0.30. The curve is flat
	// from 32 KiB on, within the machine's noise; 32 KiB costs half the
	// memory of 64 KiB (74 KB of heap per idle circuit).
	//
	// Why flat: a yamux stream's Read returns at most one frame, and a
	// session's ends write one frame per record of their end-to-end TLS
	// (16,406 bytes), so the copy loop never fills more than that; 16 KiB,
	// just under it, splits every record in two writes. A buffer of 16,406
	// bytes does as well but saves nothing: go-libp2p's buffer pool rounds
	// it up to 32 KiB (2026-12-03, docs/performance.md).
	//
	// The target of 0.5 is out of reach on shared cores whatever the
	// buffer: a GB sent directly costs 0.56 CPU-seconds, a GB relayed 1.10
	// at the two ends (the session's TLS and yamux inside the hop's) plus
	// 0.73 at the relay, so relayed ÷ direct is bounded by 0.56 ÷ 1.83 =
	// 0.31, and by 0.51 even with a relay that cost nothing. QUIC hops (3×
	// the CPU), larger yamux windows and GOMAXPROCS=1 (a few % each, within
	// noise) were not worth their cost.
	BufferSize int

	// CircuitDuration caps how long one relayed connection lasts; zero is
	// unlimited (the default). A session may last a working day.
	CircuitDuration time.Duration
	// CircuitData caps the bytes one relayed connection carries in each
	// direction; zero is unlimited (the default). A file copy may be large.
	CircuitData int64

	// ReservationTTL is how long a reservation lasts unless the member
	// renews it; go-libp2p clients renew well before it ends.
	ReservationTTL time.Duration
	// MaxReservations is how many members may hold a reservation at once.
	MaxReservations int
	// MaxReservationsPerIP bounds reservations from one IP address. It is
	// as large as MaxReservations by default: a site's hosts often share
	// one office NAT, and the ACL already keeps strangers out, which is
	// what the per-IP limit defends against on a public relay.
	MaxReservationsPerIP int
	// MaxReservationsPerASN bounds reservations from one autonomous system
	// (go-libp2p checks it for IPv6 only); as large as MaxReservations by
	// default for the same reason.
	MaxReservationsPerASN int

	// MaxCircuits is how many relayed connections the relay carries at
	// once. The resource manager enforces it: each circuit holds exactly
	// one outbound stream of the relay service (to the destination).
	MaxCircuits int
	// MaxCircuitsPerPeer bounds the circuits one member takes part in, as
	// source or destination (a console reaching many peers, a peer reached
	// by many technicians).
	MaxCircuitsPerPeer int

	// MaxConnections is how many connections the relay keeps (members with
	// reservations, consoles reaching them) before its connection manager
	// closes the least useful ones; reservations and circuits are tagged
	// so idle connections go first. The resource manager allows a little
	// more so the connection manager, not a hard refusal, acts first.
	MaxConnections int
}

// DefaultResources are the bounds of a relay sized for a site of a few
// thousand peers on a small server (a circuit's buffers are 64 KiB; 1,024
// circuits at most hold 64 MiB of buffers).
func DefaultResources() Resources {
	return Resources{
		BufferSize:            32 << 10,
		ReservationTTL:        time.Hour,
		MaxReservations:       4096,
		MaxReservationsPerIP:  4096,
		MaxReservationsPerASN: 4096,
		MaxCircuits:           1024,
		MaxCircuitsPerPeer:    128,
		MaxConnections:        8192,
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
	setInt(&r.BufferSize, d.BufferSize)
	setInt(&r.MaxReservations, d.MaxReservations)
	setInt(&r.MaxReservationsPerIP, r.MaxReservations)
	setInt(&r.MaxReservationsPerASN, r.MaxReservations)
	setInt(&r.MaxCircuits, d.MaxCircuits)
	setInt(&r.MaxCircuitsPerPeer, d.MaxCircuitsPerPeer)
	setInt(&r.MaxConnections, d.MaxConnections)
	if r.ReservationTTL == 0 {
		r.ReservationTTL = d.ReservationTTL
	}
	return r
}

// validate checks a Resources after withDefaults.
func (r Resources) validate() error {
	switch {
	case r.BufferSize < 512 || r.BufferSize > 16<<20:
		return fmt.Errorf("relay buffer size %d: use 512 B to 16 MiB", r.BufferSize)
	case r.CircuitDuration < 0 || r.CircuitData < 0:
		return fmt.Errorf("relay circuit limits must not be negative")
	case r.ReservationTTL < time.Minute:
		return fmt.Errorf("relay reservation TTL %s: use at least 1m", r.ReservationTTL)
	case r.MaxReservations < 0 || r.MaxReservationsPerIP < 0 || r.MaxReservationsPerASN < 0:
		return fmt.Errorf("relay reservation limits must not be negative")
	case r.MaxCircuits < 0 || r.MaxCircuitsPerPeer < 0 || r.MaxConnections < 0:
		return fmt.Errorf("relay circuit and connection limits must not be negative")
	}
	return nil
}

// relayv2 converts to go-libp2p's relay resources.
func (r Resources) relayv2() relayv2.Resources {
	rc := relayv2.Resources{
		ReservationTTL:        r.ReservationTTL,
		MaxReservations:       r.MaxReservations,
		MaxCircuits:           r.MaxCircuitsPerPeer,
		BufferSize:            r.BufferSize,
		MaxReservationsPerIP:  r.MaxReservationsPerIP,
		MaxReservationsPerASN: r.MaxReservationsPerASN,
	}
	// A nil Limit is what makes go-libp2p relay without caps and tell
	// clients their connection is not limited.
	if r.CircuitDuration > 0 || r.CircuitData > 0 {
		// go-libp2p needs both caps; the one not set gets the largest value
		// its wire format carries (seconds in a uint32).
		rc.Limit = &relayv2.RelayLimit{Duration: r.CircuitDuration, Data: r.CircuitData}
		if rc.Limit.Duration == 0 {
			rc.Limit.Duration = math.MaxUint32 * time.Second
		}
		if rc.Limit.Data == 0 {
			rc.Limit.Data = math.MaxInt64
		}
	}
	return rc
}

// managers are the libp2p resource and connection managers the relay
// host needs: go-libp2p's, scaled to the machine, with the relay's own
// scopes widened to these Resources. Left at go-libp2p's defaults, the relay
// service would stop at 256 streams (128 circuits) and 16 MiB of buffers, and
// the connection manager would close members' reservations above 192
// connections.
func (r Resources) managers() (network.ResourceManager, *connmgr.BasicConnMgr, error) {
	scaling := rcmgr.DefaultLimits
	libp2p.SetDefaultServiceLimits(&scaling)
	base := scaling.AutoScale()

	// Reservation requests also open a (short-lived) inbound hop stream
	// and hold a 4 KiB message buffer; leave room for a burst of them.
	const handshakeRoom = 256
	const handshakeMsg = 4 << 10
	circuits := r.MaxCircuits
	perPeer := r.MaxCircuitsPerPeer
	service := rcmgr.ResourceLimits{
		StreamsInbound:  rcmgr.LimitVal(circuits + handshakeRoom),
		StreamsOutbound: rcmgr.LimitVal(circuits),
		Streams:         rcmgr.LimitVal(2*circuits + handshakeRoom),
		Memory:          rcmgr.LimitVal64(highPriority(int64(circuits)*int64(2*r.BufferSize+2*handshakeMsg) + handshakeRoom*handshakeMsg)),
	}
	// The protocols' own scopes get a little more than the service's, so
	// the service scope is the one that refuses a circuit (the client then
	// hears RESOURCE_LIMIT_EXCEEDED, not CONNECTION_FAILED).
	proto := service
	proto.StreamsOutbound = rcmgr.LimitVal(circuits + handshakeRoom)
	proto.Streams = rcmgr.LimitVal(2*circuits + 2*handshakeRoom)
	servicePeer := rcmgr.ResourceLimits{
		StreamsInbound:  rcmgr.LimitVal(perPeer + 8),
		StreamsOutbound: rcmgr.LimitVal(perPeer + 8),
		Streams:         rcmgr.LimitVal(2*perPeer + 16),
		Memory:          rcmgr.LimitVal64(int64(2*perPeer+16) * handshakeMsg),
	}
	conns := rcmgr.LimitVal(r.MaxConnections + r.MaxConnections/8 + 64)
	partial := rcmgr.PartialLimitConfig{
		System:       rcmgr.ResourceLimits{ConnsInbound: conns, Conns: conns},
		Service:      map[string]rcmgr.ResourceLimits{relayv2.ServiceName: service},
		ServicePeer:  map[string]rcmgr.ResourceLimits{relayv2.ServiceName: servicePeer},
		Protocol:     map[protocol.ID]rcmgr.ResourceLimits{circuitproto.ProtoIDv2Hop: proto, circuitproto.ProtoIDv2Stop: proto},
		ProtocolPeer: map[protocol.ID]rcmgr.ResourceLimits{circuitproto.ProtoIDv2Hop: servicePeer, circuitproto.ProtoIDv2Stop: servicePeer},
	}
	// Members behind one office NAT share an address: lift libp2p's cap of
	// 8 connections per IPv4 address (the ACL decides who may connect;
	// MaxReservationsPerIP bounds reservations per address).
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(partial.Build(base)),
		rcmgr.WithLimitPerSubnet(
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: r.MaxConnections}},
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 56, ConnCount: r.MaxConnections}}),
		rcmgr.WithConnRateLimiters(connRate()))
	if err != nil {
		return nil, nil, fmt.Errorf("relay resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(r.MaxConnections*7/8, r.MaxConnections, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		rm.Close()
		return nil, nil, fmt.Errorf("relay connection manager: %w", err)
	}
	return rm, cm, nil
}

// connRate is the rate of new connections the relay accepts from one
// address (an IPv4 address, an IPv6 /56; a /48 gets more): 10 a second,
// 256 at once. libp2p's default, 0.2 a second and 16 at once, is a
// stranger's; a site's members behind one NAT open far more — every
// console command is a new process with new connections, a peer's
// observations and each port-mapping probe exchange add one — and in the
// lab's grid a hard console was refused its relay connections in the
// fifth of 5 runs (connect_timeout to every peer). Loopback stays
// unlimited, as in libp2p's default.
func connRate() *rate.Limiter {
	perAddr := rate.Limit{RPS: 10, Burst: 256}
	return &rate.Limiter{
		NetworkPrefixLimits: []rate.PrefixLimit{
			{Prefix: netip.MustParsePrefix("127.0.0.0/8")},
			{Prefix: netip.MustParsePrefix("::1/128")},
		},
		SubnetRateLimiter: rate.SubnetLimiter{
			IPv4SubnetLimits: []rate.SubnetLimit{{PrefixLength: 32, Limit: perAddr}},
			IPv6SubnetLimits: []rate.SubnetLimit{
				{PrefixLength: 56, Limit: perAddr},
				{PrefixLength: 48, Limit: rate.Limit{RPS: 25, Burst: 1024}},
			},
			GracePeriod: time.Minute,
		},
	}
}

// highPriority is the limit under which a scope grants n bytes reserved at
// network.ReservationPriorityHigh, as go-libp2p reserves a circuit's
// buffers: such a reservation succeeds only while the scope stays within
// 204/256 of its limit. A limit of exactly n stopped a relay at 929 of its
// 1,024 circuits (BenchmarkRelaySessionsPerCore with 1,000 sessions).
func highPriority(n int64) int64 {
	share := int64(network.ReservationPriorityHigh) + 1 // of 256
	return (n*256 + share - 1) / share
}
