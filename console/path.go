package console

import (
	"context"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// PathKind is how a console reaches a peer, as the coordinator's path
// statistics, `ping --json` and the lab count it.
type PathKind uint8

const (
	// PathNone: not connected.
	PathNone PathKind = iota
	// PathDirect: a connection of the console's own to the peer's address
	// (at once, or after a hole punch).
	PathDirect
	// PathRelayed: a circuit through one of the site's relays.
	PathRelayed
	// PathJumpoint: a connection of the console's tunnel host to a peer
	// behind a jumpoint, carried by a tunnel through the jumpoint
	// (tunnelhost.go). Its remote address is the peer's on the jumpoint's
	// network, so only the tunnel host can tell it (AddrPath cannot).
	PathJumpoint
)

// String is the word of the path reports, `ping --json` and the lab
// ("direct", "relayed", "jumpoint"); empty when not connected.
func (k PathKind) String() string {
	switch k {
	case PathDirect:
		return "direct"
	case PathRelayed:
		return "relayed"
	case PathJumpoint:
		return "jumpoint"
	}
	return ""
}

// Path is one way a console reaches a peer: the kind, the remote address
// of the connection, and for a circuit the node carrying it.
type Path struct {
	Kind PathKind
	// Addr is the connection's remote address (for a circuit: the relay's
	// address, /p2p-circuit, the peer).
	Addr ma.Multiaddr
	// Relay is the relay (or jumpoint) a circuit goes through.
	Relay peer.ID
	// Jumpoint is the jumpoint's name, for PathJumpoint.
	Jumpoint string
	// Transport is "tcp" or "quic": of the connection to the peer when
	// direct, of the connection to the relay when relayed; empty for
	// another transport.
	Transport string
}

// String describes the path as `jump -v`, `forward -v` and ping print it
// (the lab reads these words): "direct ADDR", "relayed via RELAY (ADDR)",
// "via jumpoint NAME (ADDR)", or "not connected".
func (p Path) String() string {
	switch p.Kind {
	case PathDirect:
		return "direct " + p.Addr.String()
	case PathRelayed:
		return p.Kind.String() + " via " + p.Relay.String() + " (" + p.Addr.String() + ")"
	case PathJumpoint:
		name := p.Jumpoint
		if name == "" {
			name = p.Relay.String()
		}
		return "via jumpoint " + name + " (" + p.Addr.String() + ")"
	}
	return "not connected"
}

// AddrPath classifies a connection by its remote address: a circuit
// (/p2p-circuit) is relayed through the first /p2p in it; anything else
// is direct.
func AddrPath(addr ma.Multiaddr) Path {
	p := Path{Kind: PathDirect, Addr: addr, Transport: transportOf(addr)}
	var relay peer.ID
	for _, c := range addr {
		switch c.Code() {
		case ma.P_P2P:
			if relay == "" {
				relay = peer.ID(c.RawValue())
			}
		case ma.P_CIRCUIT:
			p.Kind, p.Relay = PathRelayed, relay
			return p
		}
	}
	return p
}

// transportOf is the first hop's transport: "quic", "tcp", or "".
func transportOf(addr ma.Multiaddr) string {
	for _, c := range addr {
		switch c.Code() {
		case ma.P_QUIC, ma.P_QUIC_V1:
			return "quic"
		case ma.P_TCP:
			return "tcp"
		}
	}
	return ""
}

// PathTo is how h reaches p now. A direct connection wins when there are
// both (after a hole punch); otherwise the first connection's path.
func PathTo(h host.Host, p peer.ID) Path { return pathTo(h, p, connPath) }

// connPath classifies a connection of the console's main host.
func connPath(c network.Conn) Path { return AddrPath(c.RemoteMultiaddr()) }

// pathTo is PathTo with the classification of the host's connections.
func pathTo(h host.Host, p peer.ID, classify func(network.Conn) Path) Path {
	conns := h.Network().ConnsToPeer(p)
	if len(conns) == 0 {
		return Path{}
	}
	for _, c := range conns {
		if path := classify(c); path.Kind == PathDirect {
			return path
		}
	}
	return classify(conns[0])
}

// PathWatch follows how a console reaches one peer: the kind of the first
// connection, how long reaching it took, and when a direct connection
// (a hole punch's result) replaced a relayed one. Start it before
// connecting so no direct connection is missed.
type PathWatch struct {
	h        host.Host
	id       peer.ID
	classify func(network.Conn) Path
	start    time.Time
	notifee  *network.NotifyBundle
	direct   chan struct{} // closed at the first direct connection

	mu          sync.Mutex
	connected   bool
	initial     PathKind
	connectTook time.Duration
	relayedAt   time.Time
	directAt    time.Time
}

// WatchPath starts watching h's connections to id.
func WatchPath(h host.Host, id peer.ID) *PathWatch { return watchPath(h, id, connPath) }

// watchPath is WatchPath with the classification of h's connections.
func watchPath(h host.Host, id peer.ID, classify func(network.Conn) Path) *PathWatch {
	w := &PathWatch{h: h, id: id, classify: classify, start: time.Now(), direct: make(chan struct{})}
	w.notifee = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if c.RemotePeer() == id && classify(c).Kind == PathDirect {
			w.sawDirect()
		}
	}}
	h.Network().Notify(w.notifee)
	return w
}

func (w *PathWatch) sawDirect() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.markDirect()
}

// markDirect notes the first direct connection; w.mu is held.
func (w *PathWatch) markDirect() {
	if w.directAt.IsZero() {
		w.directAt = time.Now()
		close(w.direct)
	}
}

// Connected records the first connection; call it when connecting
// succeeded. It reports whether this call recorded it (later calls do
// nothing).
func (w *PathWatch) Connected() bool {
	kind := w.Path().Kind
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.connected {
		return false
	}
	w.connected, w.connectTook, w.initial = true, time.Since(w.start), kind
	switch kind {
	case PathRelayed:
		w.relayedAt = time.Now()
	case PathDirect:
		// Connected directly, perhaps before the notifee ran (or on a
		// connection that existed already).
		w.markDirect()
	}
	return true
}

// WaitDirect waits, at most d, until the console has a direct connection
// to the peer, and says whether it has one.
func (w *PathWatch) WaitDirect(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-w.direct:
		return true
	case <-t.C:
	case <-ctx.Done():
	}
	return w.Path().Kind == PathDirect
}

// Path is the watched peer's path now.
func (w *PathWatch) Path() Path { return pathTo(w.h, w.id, w.classify) }

// PathSummary is what a PathWatch saw.
type PathSummary struct {
	Connected bool
	// Initial is the first connection's kind, Final the kind of FinalPath,
	// the path at the time of the summary.
	Initial, Final PathKind
	FinalPath      Path
	Connect        time.Duration
	// TimeToDirect is the time from the relayed connection to the direct
	// one; zero when the session started direct or stayed relayed.
	TimeToDirect time.Duration
}

// Summary describes the path now.
func (w *PathWatch) Summary() PathSummary {
	final := w.Path()
	w.mu.Lock()
	defer w.mu.Unlock()
	s := PathSummary{Connected: w.connected, Initial: w.initial, FinalPath: final, Final: final.Kind, Connect: w.connectTook}
	if w.initial == PathRelayed && !w.directAt.IsZero() {
		s.TimeToDirect = max(time.Millisecond, w.directAt.Sub(w.relayedAt))
	}
	return s
}

// Stop ends the watch.
func (w *PathWatch) Stop() { w.h.Network().StopNotify(w.notifee) }
