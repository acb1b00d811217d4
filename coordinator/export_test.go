package coordinator

import (
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// PeerOnlineForTest reports whether the service sees id online, here or
// held by another coordinator of the site.
func (s *Service) PeerOnlineForTest(id peer.ID) bool {
	_, online := s.peers.get(id)
	return online
}

// HostAddrsForTest is where the service would say peer id is: its host's
// view, or the presence record of the coordinator that holds it.
func (s *Service) HostAddrsForTest(id peer.ID) []ma.Multiaddr { return s.hostAddrs(id) }

// ClosingForTest makes new peer streams and control requests meet c as
// they do between the start of Close and its host's close; undo ends it.
func (c *Coordinator) ClosingForTest() (undo func()) {
	c.handlerMu.Lock()
	c.closing = true
	c.handlerMu.Unlock()
	return func() {
		c.handlerMu.Lock()
		c.closing = false
		c.handlerMu.Unlock()
	}
}

// SetStartingHookForTest runs fn in New once the host listens and before
// the coordinator's handlers are set; waited is closed when a connection
// first waits at the handshake gate for them.
func SetStartingHookForTest(fn func(waited <-chan struct{})) (restore func()) {
	prev := startingHook
	startingHook = fn
	return func() { startingHook = prev }
}

// SetClosingHookForTest runs f in every Close of this test binary, before
// the host closes its connections, until undo.
func SetClosingHookForTest(f func(*Coordinator)) (undo func()) {
	closingHook = f
	return func() { closingHook = nil }
}
