package mesh

import (
	"github.com/libp2p/go-libp2p/core/host"
	ma "github.com/multiformats/go-multiaddr"
)

// StopListening closes every listener of h and leaves its connections
// open. A daemon that closes calls it before anything ends a connection:
// go-libp2p's host closes its listeners and its connections side by
// side, and a client whose connection ends redials at once — a listener
// not yet closed took the new connection into the kernel's queue and then
// reset it as it closed, a failed attempt the client backs off from, where
// a closed port refuses it at once, which a peer takes for the restart it
// is (peer.Restarting) and retries within 2 s.
func StopListening(h host.Host) {
	if h == nil {
		return
	}
	if l, ok := h.Network().(interface{ ListenClose(...ma.Multiaddr) }); ok {
		l.ListenClose(h.Network().ListenAddresses()...)
	}
}
