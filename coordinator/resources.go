package coordinator

import (
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/x/rate"

	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/peerproto"
)

// Resources are every bound a coordinator puts on what callers make it
// spend, in one place so an operator can see and tune them. A zero field
// means its DefaultResources value.
//
// A coordinator faces the Internet: anyone can complete a Noise/TLS
// handshake with it and open streams. The secure channel authenticates the
// remote's peer ID before any byte of a request arrives, so the coordinator
// sorts callers first: a member (an enrolled peer, or a key bound to a
// technician or relay) gets the full limits; a stranger (anyone else: a
// console logging in with an invite, a host enrolling with an installer
// key, an attacker) may send one small first message, a few streams at a
// time, quickly. libp2p's resource manager bounds everything else per peer
// identity and for the whole host.
//
// The defaults are sized for a site of tens of thousands of peers on a
// small server. Measured (docs/performance.md, "Memory per online peer",
// 2,000 peers over TCP): an online peer costs the coordinator 71–72 KB of
// heap in use and stacks, an offline one 20–50 KB, so 20,000 online peers
// need about 1.5 GB.
type Resources struct {
	// MaxConnections is how many connections the coordinator keeps (one per
	// online peer, plus consoles, relays and strangers). Above it the
	// connection manager closes the least useful ones (never an online
	// peer's: those are protected) down to 7/8 of it; the resource manager
	// refuses new ones at 9/8 of it. Connections from one IP address are
	// not capped separately: a site's hosts often share one office NAT.
	MaxConnections int
	// MaxHandshakes bounds connections still being set up (security and
	// muxer handshakes, before the remote's peer ID is known: libp2p's
	// transient scope), and 4× as many streams not yet past protocol
	// negotiation.
	MaxHandshakes int
	// HandshakeHold bounds how long one inbound TCP connection counts
	// against the handshake gate (handshakes.go), which lets as many
	// handshakes run at once as the machine serves quickly and keeps the
	// rest in its waiting room (within MaxHandshakes), then the kernel's
	// accept queue: past it, a connection that has not finished its
	// security handshake no longer delays others.
	HandshakeHold time.Duration
	// MaxStreamsPerPeer bounds the inbound streams of one peer identity
	// over all protocols (an online peer holds one; a console one per
	// request in flight). yamux accounts 256 KiB per stream.
	MaxStreamsPerPeer int
	// MaxControlStreams bounds control requests in flight from all callers.
	MaxControlStreams int
	// MaxMemory is the resource manager's memory budget for the whole host.
	// It counts reservations, not bytes in use: chiefly yamux's 256 KiB
	// receive window per TCP stream, reserved whether filled or not, and
	// each request body over 4 KiB while it is read and decoded. The
	// default, 512 KiB per connection, holds every online peer's stream with
	// room for control requests; measured use is far lower (see above).
	MaxMemory int64

	// MaxStrangers bounds strangers' first messages being read at once,
	// all strangers together; more wait up to StrangerTimeout for a turn.
	// Members never wait behind strangers.
	MaxStrangers int
	// MaxStrangersPerPeer bounds one stranger identity's streams being
	// read at once; more are reset.
	MaxStrangersPerPeer int
	// MaxStrangerMessage bounds a stranger's control request. A stranger
	// may only log in: a login with its invite code is 44 bytes.
	MaxStrangerMessage int
	// MaxStrangerHello bounds the hello of a host that is not enrolled yet.
	// The largest measured (an installer key with every default and
	// override at its maximum length, 1,964 bytes, and the host's facts)
	// is 3,343 bytes; a host with many interfaces adds some.
	MaxStrangerHello int
	// StrangerTimeout bounds how long a stranger may take to send its first
	// message once it has its turn (and how long it waits for one).
	StrangerTimeout time.Duration

	// PeerSendQueue bounds the messages waiting in one online peer's send
	// queue (a settings update counts once however many changes it
	// carries). A peer whose queue is full is disconnected (push.go).
	PeerSendQueue int
	// PeerWriteTimeout bounds how long one message may wait for an online
	// peer to take it; a peer that does not is disconnected.
	PeerWriteTimeout time.Duration
	// PeerWriters bounds the send queues being written at once (a write
	// that a peer holds up past 250 ms no longer counts): a settings change
	// to every online peer is spread over a few goroutines, not one each,
	// so other requests keep their turn.
	PeerWriters int
	// RebalanceEvery is how often a coordinator of several compares the
	// peers it holds with its share and moves the excess (rebalance.go);
	// negative: never.
	RebalanceEvery time.Duration
}

// hostOptions are the libp2p options that size what each connection
// holds. yamux's accept backlog is a channel of that many stream pointers
// per connection, allocated when the connection opens: libp2p's default,
// 256, is 2 KiB per online peer that never opens more than a few streams;
// more than MaxStreamsPerPeer waiting is refused by the resource manager
// anyway, so the backlog is that bound.
func (r Resources) hostOptions() []libp2p.Option {
	mux := *yamux.DefaultTransport // libp2p's settings (window, no stream limit of its own)
	mux.AcceptBacklog = r.MaxStreamsPerPeer
	return []libp2p.Option{libp2p.Muxer(yamux.ID, &mux)}
}

// yamuxWindow is what yamux reserves in the resource manager for each
// stream it opens or accepts (its initial receive window).
const yamuxWindow = 256 << 10

// DefaultResources are the bounds of a coordinator sized for a site of
// 20,000 peers online at once.
func DefaultResources() Resources {
	const conns = 20_000
	return Resources{
		MaxConnections:      conns,
		MaxHandshakes:       2048,
		HandshakeHold:       time.Second,
		MaxStreamsPerPeer:   64,
		MaxControlStreams:   2048,
		MaxMemory:           conns * 2 * yamuxWindow,
		MaxStrangers:        256,
		MaxStrangersPerPeer: 4,
		MaxStrangerMessage:  4 << 10,
		MaxStrangerHello:    16 << 10,
		StrangerTimeout:     10 * time.Second,
		// Revocations are what queue up (settings updates coalesce); 64 is
		// more than an administrator makes in the time a reading peer
		// takes one, and at most 64 pointers per peer.
		PeerSendQueue:    64,
		PeerWriteTimeout: 10 * time.Second,
		PeerWriters:      32,
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
	setInt(&r.MaxConnections, d.MaxConnections)
	setInt(&r.MaxHandshakes, d.MaxHandshakes)
	setInt(&r.MaxStreamsPerPeer, d.MaxStreamsPerPeer)
	setInt(&r.MaxControlStreams, d.MaxControlStreams)
	setInt(&r.MaxStrangers, d.MaxStrangers)
	setInt(&r.MaxStrangersPerPeer, d.MaxStrangersPerPeer)
	setInt(&r.MaxStrangerMessage, d.MaxStrangerMessage)
	setInt(&r.MaxStrangerHello, d.MaxStrangerHello)
	setInt(&r.PeerSendQueue, d.PeerSendQueue)
	setInt(&r.PeerWriters, d.PeerWriters)
	if r.PeerWriteTimeout == 0 {
		r.PeerWriteTimeout = d.PeerWriteTimeout
	}
	if r.MaxMemory == 0 {
		r.MaxMemory = int64(r.MaxConnections) * 2 * yamuxWindow
	}
	if r.StrangerTimeout == 0 {
		r.StrangerTimeout = d.StrangerTimeout
	}
	if r.HandshakeHold == 0 {
		r.HandshakeHold = d.HandshakeHold
	}
	if r.RebalanceEvery == 0 {
		r.RebalanceEvery = DefaultRebalanceEvery
	}
	return r
}

// validate checks a Resources after withDefaults.
func (r Resources) validate() error {
	switch {
	case r.MaxConnections < 16 || r.MaxHandshakes < 1 || r.MaxStreamsPerPeer < 4 || r.MaxControlStreams < 1:
		return fmt.Errorf("coordinator resources: at least 16 connections, 1 handshake, 4 streams per peer and 1 control stream")
	case r.MaxMemory < 64<<20:
		return fmt.Errorf("coordinator resources: memory budget %d: use at least 64 MiB", r.MaxMemory)
	case r.MaxStrangers < 1 || r.MaxStrangersPerPeer < 1:
		return fmt.Errorf("coordinator resources: strangers need at least one turn")
	case r.MaxStrangerMessage < 256 || r.MaxStrangerMessage > control.MaxMessage ||
		r.MaxStrangerHello < 1<<10 || r.MaxStrangerHello > peerproto.MaxMessage:
		return fmt.Errorf("coordinator resources: stranger message limits out of range")
	case r.HandshakeHold < 10*time.Millisecond:
		return fmt.Errorf("coordinator resources: handshake hold %s: use at least 10ms", r.HandshakeHold)
	case r.StrangerTimeout < time.Second:
		return fmt.Errorf("coordinator resources: stranger timeout %s: use at least 1s", r.StrangerTimeout)
	case r.PeerSendQueue < 1 || r.PeerWriteTimeout < time.Second || r.PeerWriters < 1:
		return fmt.Errorf("coordinator resources: peers' send queues need at least 1 message, 1s to write one and 1 writer")
	}
	return nil
}

// managers builds the libp2p resource and connection managers. Scopes
// not named here are unlimited: each rolls up into a finite one (its
// peer's and the host's).
func (r Resources) managers() (network.ResourceManager, *connmgr.BasicConnMgr, error) {
	conns := r.MaxConnections + r.MaxConnections/8 + 64
	streamsIn := 2*conns + r.MaxControlStreams
	system := rcmgr.ResourceLimits{
		Conns: rcmgr.LimitVal(conns), ConnsInbound: rcmgr.LimitVal(conns), ConnsOutbound: rcmgr.LimitVal(conns),
		Streams: rcmgr.LimitVal(streamsIn + conns), StreamsInbound: rcmgr.LimitVal(streamsIn), StreamsOutbound: rcmgr.LimitVal(conns),
		FD:     rcmgr.LimitVal(conns),
		Memory: rcmgr.LimitVal64(r.MaxMemory),
	}
	hs := r.MaxHandshakes
	transient := rcmgr.ResourceLimits{
		Conns: rcmgr.LimitVal(hs), ConnsInbound: rcmgr.LimitVal(hs), ConnsOutbound: rcmgr.LimitVal(hs),
		Streams: rcmgr.LimitVal(4 * hs), StreamsInbound: rcmgr.LimitVal(4 * hs), StreamsOutbound: rcmgr.LimitVal(4 * hs),
		FD:     rcmgr.LimitVal(hs),
		Memory: rcmgr.LimitVal64(int64(4*hs) * yamuxWindow),
	}
	per := r.MaxStreamsPerPeer
	peerLimit := rcmgr.ResourceLimits{
		// A peer reconnecting (TCP and QUIC, the old connection not yet
		// gone) holds a few connections for a moment.
		Conns: 8, ConnsInbound: 8, ConnsOutbound: 8,
		Streams: rcmgr.LimitVal(2 * per), StreamsInbound: rcmgr.LimitVal(per), StreamsOutbound: rcmgr.LimitVal(per),
		Memory: rcmgr.LimitVal64(int64(per)*yamuxWindow + 2*control.MaxMessage),
	}
	partial := rcmgr.PartialLimitConfig{
		System:      system,
		Transient:   transient,
		PeerDefault: peerLimit,
		Protocol: map[protocol.ID]rcmgr.ResourceLimits{
			control.Protocol:   {StreamsInbound: rcmgr.LimitVal(r.MaxControlStreams)},
			peerproto.Protocol: {StreamsInbound: rcmgr.LimitVal(conns)},
		},
		ProtocolPeer: map[protocol.ID]rcmgr.ResourceLimits{
			// An online peer's stream, and its successor while it reconnects.
			peerproto.Protocol: {StreamsInbound: 4},
		},
	}
	limits := partial.Build(rcmgr.InfiniteLimits)
	rm, err := rcmgr.NewResourceManager(rcmgr.NewFixedLimiter(limits),
		// An office NAT puts many peers behind one address: libp2p's cap of
		// 8 connections per IPv4 address would refuse them.
		rcmgr.WithLimitPerSubnet(
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: conns}},
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 56, ConnCount: conns}}),
		// After a restart every peer reconnects at once, many from one NAT;
		// the site's connection-rate paces them after their hello instead.
		rcmgr.WithConnRateLimiters(&rate.Limiter{}))
	if err != nil {
		return nil, nil, fmt.Errorf("coordinator resource manager: %w", err)
	}
	cm, err := connmgr.NewConnManager(r.MaxConnections*7/8, r.MaxConnections, connmgr.WithGracePeriod(time.Minute))
	if err != nil {
		rm.Close()
		return nil, nil, fmt.Errorf("coordinator connection manager: %w", err)
	}
	return rm, cm, nil
}
