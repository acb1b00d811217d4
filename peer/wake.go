package peer

import (
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/jumpmesh/jumpmesh/mesh/wake"
)

// A peer is a waker for its neighbours (mesh/wake): the coordinator opens a
// wake stream on the connection the peer holds to it and orders magic
// packets for a sleeping peer behind the same gateway, or the wake command
// forwarded to a passive one. Only the pinned site is served (the Waker
// resets any other stream unread) and only commands it signed are carried
// out. Decision: a command's expiry is checked on the wall clock, not the
// daemon's: the coordinator signs it on the wall clock (coordinator/wake.go)
// — a window of seconds in network time, like a stream deadline, that a
// test's or the lab's clock moved by minutes must not close. The Waker
// picks the interface toward the target's gateway, else toward its private
// IPs, else the default route's.

// serveWake registers the wake protocol for as long as Run runs.
func (d *Daemon) serveWake() {
	w := wake.NewWaker(wake.WakerConfig{Site: d.site.ID, Log: d.log}) // wall clock: see above
	d.host.SetStreamHandler(wake.Protocol, func(s network.Stream) {
		// Registered like a channel, so the daemon's end resets the stream
		// and waits for the handler (its sending is bounded by the Waker).
		id, ok := d.wakes.enter(func() { _ = s.Reset() })
		if !ok {
			_ = s.Reset()
			return
		}
		defer d.wakes.leave(id)
		w.Handle(s)
	})
}

// stopWake takes no new wake order and waits for those being served.
func (d *Daemon) stopWake() {
	d.host.RemoveStreamHandler(wake.Protocol)
	d.wakes.close()
}
