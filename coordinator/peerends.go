package coordinator

import (
	"errors"
	"os"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// Why an attempt of a peer ends without an answer. During a storm every
// attempt the coordinator ends unanswered is one the peer counts failed
// and retries after its backoff; each is counted here by its reason, so a
// benchmark or /metrics names it (BenchmarkReconnectStorm prints them).

// PeerEnds counts peer streams the coordinator ended before any answer,
// and the resource manager's refusals, by reason.
type PeerEnds struct {
	// Closing: a peer stream that came while the coordinator was closing
	// (answered with a retry-after since session 26).
	Closing int64
	// HelloTurn: a stranger's hello found no turn (strangers.go).
	HelloTurn int64
	// HelloTimeout: no hello within its deadline; HelloEnded: the stream
	// ended before it; NotHello: the first message was something else.
	HelloTimeout, HelloEnded, NotHello int64
	// The resource manager (resources.go) refused: a connection
	// (OpenConnection, or its peer's scope at SetPeer), a stream
	// (OpenStream, or its protocol's or service's scope).
	RefusedConns, RefusedPeers, RefusedStreams, RefusedProtocols int64
}

// peerEnds are PeerEnds' live counters: the service counts the streams it
// ends, the handshake gate (which wraps the resource manager) the refusals.
type peerEnds struct {
	closing, helloTurn, helloTimeout, helloEnded, notHello    atomic.Int64
	refusedConns, refusedPeers, refusedStreams, refusedProtos atomic.Int64
}

func (e *peerEnds) snapshot() PeerEnds {
	return PeerEnds{Closing: e.closing.Load(), HelloTurn: e.helloTurn.Load(), HelloTimeout: e.helloTimeout.Load(),
		HelloEnded: e.helloEnded.Load(), NotHello: e.notHello.Load(),
		RefusedConns: e.refusedConns.Load(), RefusedPeers: e.refusedPeers.Load(),
		RefusedStreams: e.refusedStreams.Load(), RefusedProtocols: e.refusedProtos.Load()}
}

// helloFailed counts why no hello was read.
func (e *peerEnds) helloFailed(err error) {
	switch {
	case err == nil:
		e.notHello.Add(1)
	case errors.Is(err, os.ErrDeadlineExceeded):
		e.helloTimeout.Add(1)
	default:
		e.helloEnded.Add(1)
	}
}

// PeerEnds reports the peer streams ended unanswered and the resource
// manager's refusals, by reason.
func (c *Coordinator) PeerEnds() PeerEnds {
	e := c.service.ends.snapshot()
	g := c.gate.ends.snapshot()
	e.RefusedConns, e.RefusedPeers, e.RefusedStreams, e.RefusedProtocols = g.RefusedConns, g.RefusedPeers, g.RefusedStreams, g.RefusedProtocols
	return e
}

// OpenStream opens a stream's scope, counting the resource manager's
// refusals (the stream's, then its protocol's or service's).
func (g *handshakeGate) OpenStream(p peer.ID, dir network.Direction) (network.StreamManagementScope, error) {
	scope, err := g.ResourceManager.OpenStream(p, dir)
	if err != nil {
		g.ends.refusedStreams.Add(1)
		return nil, err
	}
	return countedStream{StreamManagementScope: scope, ends: &g.ends}, nil
}

// countedStream counts refusals of a stream's protocol or service.
type countedStream struct {
	network.StreamManagementScope
	ends *peerEnds
}

func (s countedStream) SetProtocol(proto protocol.ID) error {
	err := s.StreamManagementScope.SetProtocol(proto)
	if err != nil {
		s.ends.refusedProtos.Add(1)
	}
	return err
}

func (s countedStream) SetService(srv string) error {
	err := s.StreamManagementScope.SetService(srv)
	if err != nil {
		s.ends.refusedProtos.Add(1)
	}
	return err
}
