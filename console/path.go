package console

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
)

// Path kinds, as the coordinator's path statistics and the lab count them.
const (
	PathDirect  = "direct"
	PathRelayed = "relayed"
)

// PathWatch follows how a console reaches one peer: the kind of the first
// connection, how long reaching it took, and when a direct connection
// (a hole punch's result) replaced a relayed one. Start it before
// connecting so no direct connection is missed.
type PathWatch struct {
	h       host.Host
	id      peer.ID
	start   time.Time
	notifee *network.NotifyBundle
	direct  chan struct{} // closed at the first direct connection

	mu          sync.Mutex
	connected   bool
	initial     string
	connectTook time.Duration
	relayedAt   time.Time
	directAt    time.Time
}

// WatchPath starts watching h's connections to id.
func WatchPath(h host.Host, id peer.ID) *PathWatch {
	w := &PathWatch{h: h, id: id, start: time.Now(), direct: make(chan struct{})}
	w.notifee = &network.NotifyBundle{ConnectedF: func(_ network.Network, c network.Conn) {
		if c.RemotePeer() == id && !mesh.IsCircuit(c.RemoteMultiaddr()) {
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
	kind := pathKind(PathTo(w.h, w.id))
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.connected {
		return false
	}
	w.connected, w.connectTook, w.initial = true, time.Since(w.start), kind
	if kind == PathRelayed {
		w.relayedAt = time.Now()
	} else {
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
	return pathKind(PathTo(w.h, w.id)) == PathDirect
}

// PathSummary is what a PathWatch saw.
type PathSummary struct {
	Connected bool
	// Initial and Final are PathDirect or PathRelayed; FinalPath is
	// PathTo's description of the final path.
	Initial, Final, FinalPath string
	Connect                   time.Duration
	// TimeToDirect is the time from the relayed connection to the direct
	// one; zero when the session started direct or stayed relayed.
	TimeToDirect time.Duration
}

// Summary describes the path now.
func (w *PathWatch) Summary() PathSummary {
	final := PathTo(w.h, w.id)
	w.mu.Lock()
	defer w.mu.Unlock()
	s := PathSummary{Connected: w.connected, Initial: w.initial, FinalPath: final, Final: pathKind(final), Connect: w.connectTook}
	if w.initial == PathRelayed && !w.directAt.IsZero() {
		s.TimeToDirect = max(time.Millisecond, w.directAt.Sub(w.relayedAt))
	}
	return s
}

// Stop ends the watch.
func (w *PathWatch) Stop() { w.h.Network().StopNotify(w.notifee) }

// pathKind is PathDirect or PathRelayed for a PathTo description, or ""
// when not connected.
func pathKind(path string) string {
	switch {
	case strings.HasPrefix(path, "relayed"):
		return PathRelayed
	case strings.HasPrefix(path, "direct"):
		return PathDirect
	}
	return ""
}

// PathTo describes how h reaches p now: "direct <addr>", "relayed via
// <relay> (<addr>)", or "not connected". A direct connection wins when
// there are both (after a hole punch).
func PathTo(h host.Host, p peer.ID) string {
	conns := h.Network().ConnsToPeer(p)
	if len(conns) == 0 {
		return "not connected"
	}
	for _, c := range conns {
		if !mesh.IsCircuit(c.RemoteMultiaddr()) {
			return "direct " + c.RemoteMultiaddr().String()
		}
	}
	addr := conns[0].RemoteMultiaddr()
	relay, _ := addr.ValueForProtocol(ma.P_P2P)
	return "relayed via " + relay + " (" + addr.String() + ")"
}
