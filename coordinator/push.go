package coordinator

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Pushing to online peers. Everything the coordinator tells an online peer
// after its welcome — new settings (settings set, peer set, a relay that
// appears), revocations, the order to uninstall — goes through that peer's
// send queue; nothing writes to a peer on the caller's goroutine. Pushing
// appends to the queue and returns, so an administrator's request costs a
// lock and an append per online peer, never a network write, and one peer
// that does not read holds up no one but itself.
//
// A pool of writers (pushPool) takes the sessions with something queued,
// in turn, and writes each one's queue until it is empty: one writer per
// session at a time, so its messages keep their order; at most
// Resources.PeerWriters at once, so a change for 20,000 peers does not
// make 20,000 goroutines runnable ahead of every other request; none when
// nothing is queued. A write that a peer holds up past pushHold gives its
// writer's place to a new writer, so peers that do not read delay no
// one. The pool counts its goroutines; Coordinator.Close waits for them
// after closing the host, which resets every stream, so each write
// returns.
//
// A settings update is queued as a marker, not a message: the writer builds
// it from the current settings and record when it gets there, and a newer
// update while one is waiting adds nothing. A peer that falls behind thus
// gets the latest settings once, not every change in between.
//
// A peer that does not read is disconnected (its stream reset), not
// skipped: when its queue holds Resources.PeerSendQueue messages, or a
// message waits Resources.PeerWriteTimeout to be taken. Dropping a message
// instead would leave a peer online with settings it was never sent, or a
// revocation it never saw; disconnected, it reconnects (with backoff) and
// its welcome carries every current setting, and the grants a revocation
// it missed covers open channels for at most grant.Limits.OpenFor, as for
// any peer offline at the time (peer/doc.go, step 8).

// peerSession is an online peer's stream. ServePeer's goroutine reads it;
// the coordinator writes the welcome with send, then everything else
// through the session's send queue (push).
type peerSession struct {
	id        peer.ID
	ms        *frame.Stream
	closeOnce sync.Once

	mu sync.Mutex
	// queue is what waits to be written, in order; a nil entry is a
	// settings update, built when written.
	queue []*pb.PeerDown
	// updating: queue holds a settings update not yet built.
	updating bool
	// started: the welcome is out, so queued messages may be written.
	started bool
	// writing: a writer goroutine is at work on this session.
	writing bool
	// ended: the session takes no more messages (closed, or its last
	// message, an uninstall order, is queued).
	ended bool
	// closed: the stream was reset.
	closed bool
	// sent is the peer's settings as its welcome or its latest update
	// carried them (nil until the welcome); followed, the newest record
	// another coordinator wrote before that (follow.go).
	sent     *pb.InstallerDefaults
	followed *pb.Peer
}

func newPeerSession(id peer.ID, ms *frame.Stream) *peerSession {
	return &peerSession{id: id, ms: ms}
}

// send writes m at once. Only for what precedes the session's queue (the
// welcome, an order to a host never welcomed): once startPushes ran, a
// writer may be writing, and everything goes through push.
func (ps *peerSession) send(m *pb.PeerDown) error {
	if w := m.GetWelcome(); w != nil {
		ps.mu.Lock()
		ps.sent = w.GetPeer().GetSettings()
		ps.mu.Unlock()
	}
	return ps.ms.Write(m, writeTimeout)
}

// close resets the stream and drops what waits in the queue.
func (ps *peerSession) close() {
	ps.closeOnce.Do(func() {
		ps.mu.Lock()
		ps.ended, ps.closed, ps.queue = true, true, nil
		ps.mu.Unlock()
		ps.ms.Reset()
	})
}

// startPushes lets the session's queue be written, once the welcome is out.
func (s *Service) startPushes(sess *peerSession) {
	// A peer set through another coordinator while the welcome was on its
	// way: its update follows the welcome (follow.go).
	sess.mu.Lock()
	f := sess.followed
	sess.followed = nil
	sent := sess.sent
	sess.mu.Unlock()
	var m *pb.PeerDown
	if f != nil && !sameSettings(sent, f.GetSettings()) {
		m = s.followedUpdate(f)
	}
	sess.mu.Lock()
	defer sess.mu.Unlock()
	if m != nil && !sess.ended {
		sess.queue = append(sess.queue, m)
		sess.sent = m.GetUpdate().GetPeer().GetSettings()
	}
	sess.started = true
	s.writeLocked(sess)
}

// push queues m for the peer of sess (nil: its current settings), and
// reports whether it will be sent: false if the session has ended, or its
// queue was full and the peer is being disconnected.
func (s *Service) push(sess *peerSession, m *pb.PeerDown) bool {
	sess.mu.Lock()
	if sess.ended {
		sess.mu.Unlock()
		return false
	}
	if m == nil && sess.updating {
		sess.mu.Unlock()
		return true // the update waiting will carry this change too
	}
	if len(sess.queue) >= s.resources.PeerSendQueue {
		sess.mu.Unlock()
		s.slowPeers.Add(1)
		s.log.Warn("peer not reading: its send queue is full, disconnecting it", logPeer, sess.id, "queued", s.resources.PeerSendQueue)
		sess.close() // it reconnects; its welcome carries every current setting
		return false
	}
	sess.updating = sess.updating || m == nil
	sess.queue = append(sess.queue, m)
	if m.GetUninstall() != nil {
		sess.ended = true // the last message: the writer then closes its side
	}
	s.writeLocked(sess)
	sess.mu.Unlock()
	return true
}

// pushHold is how long one write may hold a writer's place in the pool;
// past it (a peer that reads slowly, or not at all) the write goes on
// outside the bound and another writer takes the place. A write to a peer
// with room in its receive window returns in microseconds.
const pushHold = 250 * time.Millisecond

// pushPool runs the sessions' writers: at most Resources.PeerWriters write
// at once, taking sessions with something queued in the order they got it.
type pushPool struct {
	mu     sync.Mutex
	ready  []*peerSession // queued, waiting for a writer
	active int            // writers within the bound
	// pending counts sessions being written or waiting (Pushing).
	pending atomic.Int64
	wg      sync.WaitGroup // every writer goroutine
}

// writeLocked hands the session to the pool if it has work and no writer.
// sess.mu is held (lock order: a session's, then the pool's).
func (s *Service) writeLocked(sess *peerSession) {
	if !sess.started || sess.writing || len(sess.queue) == 0 {
		return
	}
	sess.writing = true
	p := &s.pool
	p.pending.Add(1)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ready = append(p.ready, sess)
	s.spawnLocked()
}

// spawnLocked starts a writer if sessions wait and the bound allows.
// s.pool.mu is held.
func (s *Service) spawnLocked() {
	p := &s.pool
	if len(p.ready) > 0 && p.active < s.resources.PeerWriters {
		p.active++
		p.wg.Add(1)
		go s.pushWriter()
	}
}

// pushWriter writes sessions' queues until none waits, or until one of its
// writes ran past pushHold (it gave its place away then).
func (s *Service) pushWriter() {
	p := &s.pool
	defer p.wg.Done()
	for {
		p.mu.Lock()
		if len(p.ready) == 0 {
			p.active--
			p.mu.Unlock()
			return
		}
		sess := p.ready[0]
		p.ready[0] = nil
		p.ready = p.ready[1:]
		p.mu.Unlock()
		if !s.writeQueue(sess) {
			return
		}
	}
}

// writeQueue writes the session's queue until it is empty. It returns
// false if a write ran past pushHold, which gave the writer's place in the
// pool to another.
func (s *Service) writeQueue(sess *peerSession) (placed bool) {
	placed = true
	defer s.pool.pending.Add(-1)
	for {
		sess.mu.Lock()
		if len(sess.queue) == 0 {
			sess.writing = false
			sess.mu.Unlock()
			return placed
		}
		m := sess.queue[0]
		sess.queue[0] = nil
		sess.queue = sess.queue[1:]
		if m == nil {
			sess.updating = false // a change from now on is queued anew
		}
		sess.mu.Unlock()
		if m == nil {
			if m = s.settingsUpdate(sess.id); m == nil {
				continue // no longer enrolled
			}
			sess.mu.Lock()
			sess.sent = m.GetUpdate().GetPeer().GetSettings()
			sess.mu.Unlock()
		}
		var err error
		placed = s.held(placed, func() { err = sess.ms.Write(m, s.resources.PeerWriteTimeout) })
		if err != nil {
			sess.mu.Lock()
			gone := sess.closed // the peer left, or the coordinator is closing
			sess.mu.Unlock()
			if !gone {
				s.slowPeers.Add(1)
				s.log.Warn("peer not taking messages, disconnecting it", logPeer, sess.id, logError, err)
			}
			sess.close()
			continue // close emptied the queue
		}
		if m.GetUninstall() != nil {
			// Not a reset, which may discard the order before it is
			// delivered (QUIC cancels unsent data): the peer ends the
			// stream once it has read it.
			_ = sess.ms.Stream().CloseWrite()
		}
	}
}

// held runs write; if the writer still holds a place in the pool and the
// write takes longer than pushHold, the place goes to a new writer. It
// reports whether the writer still holds its place afterwards.
func (s *Service) held(placed bool, write func()) bool {
	if !placed {
		write()
		return false
	}
	gaveUp := make(chan struct{})
	t := time.AfterFunc(pushHold, func() {
		defer close(gaveUp)
		p := &s.pool
		p.mu.Lock()
		defer p.mu.Unlock()
		p.active--
		s.spawnLocked()
	})
	write()
	if t.Stop() {
		return true
	}
	<-gaveUp // its wg.Add happened while this writer still counted
	return false
}

// settingsUpdate is the update an online peer is sent when its settings or
// the site's change: its welcome without an observed address.
func (s *Service) settingsUpdate(id peer.ID) *pb.PeerDown {
	rec, _ := s.peers.get(id)
	if rec == nil {
		return nil
	}
	return &pb.PeerDown{Body: &pb.PeerDown_Update{Update: s.welcome(rec, "")}}
}

// pushSettings queues the settings peers keep offline to every online
// peer, and returns how many will be told.
func (s *Service) pushSettings() int {
	told := 0
	for _, sess := range s.peers.sessions() {
		if s.push(sess, nil) {
			told++
		}
	}
	return told
}

// pushUninstall queues the order to uninstall, the session's last message.
func (s *Service) pushUninstall(sess *peerSession, reason string) {
	s.push(sess, &pb.PeerDown{Body: &pb.PeerDown_Uninstall{Uninstall: &pb.PeerUninstall{Reason: reason}}})
}

// waitPushes waits for the session writers at work. Coordinator.Close
// calls it once no handler can push any more and the host is closed.
func (s *Service) waitPushes() {
	s.pool.wg.Wait()
	s.remoteWakes.wg.Wait() // wake orders of other coordinators (wakeremote.go)
}

// Pushing is how many online peers have something queued that is being
// written or waits for a writer.
func (s *Service) Pushing() int64 { return s.pool.pending.Load() }

// SlowPeers is how many times an online peer was disconnected because it
// did not take what was pushed to it.
func (s *Service) SlowPeers() int64 { return s.slowPeers.Load() }
