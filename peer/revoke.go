package peer

import (
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Revocation: the coordinator sends PeerDown{revoke} when grants it issued
// earlier no longer hold (see the package doc, step 8). The peer's gate
// refuses those grants from then on, and the channels they opened are
// closed here: the registry below knows, for every channel being served,
// its technician and its grant's issue time.

// liveChannels are the channels being served, so a revocation can close
// the ones its grants opened and the daemon's end can close them all and
// wait for their handlers.
type liveChannels struct {
	mu     sync.Mutex
	next   uint64
	m      map[uint64]*liveChannel
	closed bool
	wg     sync.WaitGroup // one per entered handler
}

type liveChannel struct {
	admitted   bool // technician and issued are known
	technician peer.ID
	issued     int64 // the grant's issued_unix (coordinator's clock)
	end        func()
}

// enter registers a channel's handler as its stream arrives; end ends it
// (resets the stream) and may be called more than once. False once the
// registry is closed: the handler must not start. leave unregisters.
func (l *liveChannels) enter(end func()) (id uint64, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return 0, false
	}
	if l.m == nil {
		l.m = map[uint64]*liveChannel{}
	}
	l.next++
	l.m[l.next] = &liveChannel{end: end}
	l.wg.Add(1)
	return l.next, true
}

// admitted records the grant a channel was admitted on, and how to end it
// now (cancel its work, reset its stream). False if the registry closed
// meanwhile: the handler stops.
func (l *liveChannels) admitted(id uint64, technician peer.ID, issued int64, end func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.m[id]
	if l.closed || c == nil {
		return false
	}
	c.admitted, c.technician, c.issued, c.end = true, technician, issued, end
	return true
}

// leave unregisters a handler at its end.
func (l *liveChannels) leave(id uint64) {
	l.mu.Lock()
	delete(l.m, id)
	l.mu.Unlock()
	l.wg.Done()
}

// close admits no more handlers, ends every channel and waits for the
// handlers to return. It may be called more than once.
func (l *liveChannels) close() {
	l.mu.Lock()
	l.closed = true
	var closing []func()
	for _, c := range l.m {
		closing = append(closing, c.end)
	}
	l.mu.Unlock()
	for _, end := range closing {
		end()
	}
	l.wg.Wait()
}

// closeCovered closes the channels r covers and says how many.
func (l *liveChannels) closeCovered(r grant.Revocation) int {
	l.mu.Lock()
	var closing []func()
	for _, c := range l.m {
		if c.admitted && r.Covers(c.technician, c.issued) {
			closing = append(closing, c.end)
		}
	}
	l.mu.Unlock()
	for _, end := range closing {
		end()
	}
	return len(closing)
}

// revoke applies the coordinator's revocation: first the gate (no new
// channel on those grants), then the channels already open.
func (d *Daemon) revoke(m *pb.PeerRevoke) {
	r := grant.Revocation{All: m.GetAll(), IssuedThrough: m.GetIssuedThroughUnix()}
	for _, t := range m.GetTechnicians() {
		if id, err := peer.IDFromBytes(t); err == nil {
			r.Technicians = append(r.Technicians, id)
		}
	}
	d.sess.gate.Revoke(r, d.clock.Now())
	n := d.sess.live.closeCovered(r)
	d.log.Info("grants revoked", "reason", m.GetReason(), "all", r.All, "technicians", len(r.Technicians), "channels_closed", n)
}
