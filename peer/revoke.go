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
// the ones its grants opened.
type liveChannels struct {
	mu   sync.Mutex
	next uint64
	m    map[uint64]liveChannel
}

type liveChannel struct {
	technician peer.ID
	issued     int64 // the grant's issued_unix (coordinator's clock)
	end        func()
}

// add registers a channel; end ends it (cancels its work, resets its
// stream) and may be called more than once. The returned func unregisters.
func (l *liveChannels) add(technician peer.ID, issued int64, end func()) (remove func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[uint64]liveChannel{}
	}
	l.next++
	id := l.next
	l.m[id] = liveChannel{technician: technician, issued: issued, end: end}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		delete(l.m, id)
	}
}

// closeCovered closes the channels r covers and says how many.
func (l *liveChannels) closeCovered(r grant.Revocation) int {
	l.mu.Lock()
	var closing []func()
	for _, c := range l.m {
		if r.Covers(c.technician, c.issued) {
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
