package coordinator

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// strangerGate gives strangers their turns to send a first message: at
// most MaxStrangers at once in all, MaxStrangersPerPeer per identity.
// A turn covers reading the message only; what the message then costs is
// paced elsewhere (the connection rate, the handlers).
type strangerGate struct {
	res   Resources
	turns chan struct{}
	stop  chan struct{}

	mu      sync.Mutex
	perPeer map[peer.ID]int
	stopped bool

	refused atomic.Int64
}

func newStrangerGate(res Resources) *strangerGate {
	return &strangerGate{res: res, turns: make(chan struct{}, res.MaxStrangers), stop: make(chan struct{}), perPeer: map[peer.ID]int{}}
}

// enter waits for id's turn. It returns the release to call once the
// message is read, or false when id already has its share of turns, none
// came within StrangerTimeout, or the gate closed.
func (g *strangerGate) enter(id peer.ID) (release func(), ok bool) {
	g.mu.Lock()
	if g.stopped || g.perPeer[id] >= g.res.MaxStrangersPerPeer {
		g.mu.Unlock()
		g.refused.Add(1)
		return nil, false
	}
	g.perPeer[id]++
	g.mu.Unlock()
	t := time.NewTimer(g.res.StrangerTimeout)
	defer t.Stop()
	select {
	case g.turns <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-g.turns; g.leave(id) }) }, true
	case <-t.C:
	case <-g.stop:
	}
	g.leave(id)
	g.refused.Add(1)
	return nil, false
}

func (g *strangerGate) leave(id peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.perPeer[id]--; g.perPeer[id] <= 0 {
		delete(g.perPeer, id)
	}
}

// close ends every wait; later strangers are refused.
func (g *strangerGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.stopped {
		g.stopped = true
		close(g.stop)
	}
}

// isMember reports whether id is an enrolled peer or a key bound to a
// technician or relay. A store error counts as a stranger: the request
// then gets the small limits, and authenticate reports the error.
func (s *Service) isMember(id peer.ID) bool {
	if rec, _ := s.peers.get(id); rec != nil {
		return true
	}
	u, err := s.userByKey(id)
	return err == nil && u != nil
}

// Admit implements mesh.ControlGate: members send up to
// mesh.MaxControlMessage; strangers (who may only log in) take a turn and
// send at most MaxStrangerMessage, within StrangerTimeout.
func (s *Service) Admit(remote peer.ID) (control.Admission, bool) {
	if s.isMember(remote) {
		return control.Admission{MaxMessage: control.MaxMessage}, true
	}
	release, ok := s.strangers.enter(remote)
	if !ok {
		return control.Admission{}, false
	}
	return control.Admission{MaxMessage: s.resources.MaxStrangerMessage, ReadTimeout: s.resources.StrangerTimeout, Release: release}, true
}

// StrangersRefused is how many strangers' streams were reset unread
// (their identity had its share of turns, or no turn came in time).
func (s *Service) StrangersRefused() int64 { return s.strangers.refused.Load() }

// readHello reads a peer stream's hello. An enrolled peer (a member) has
// helloTimeout and mesh.MaxPeerMessage; a stranger waits for a turn, then
// has StrangerTimeout and MaxStrangerHello. ok is false when no hello came.
func (s *Service) readHello(ms *frame.Stream, remote peer.ID) (hello *pb.PeerHello, member, ok bool) {
	timeout := helloTimeout
	if rec, _ := s.peers.get(remote); rec != nil {
		member = true
	} else {
		release, ok := s.strangers.enter(remote)
		if !ok {
			s.ends.helloTurn.Add(1)
			return nil, false, false
		}
		defer release()
		ms.SetMaxMessage(s.resources.MaxStrangerHello)
		timeout = s.resources.StrangerTimeout
	}
	var up pb.PeerUp
	if err := ms.Read(&up, timeout); err != nil || up.GetHello() == nil {
		s.ends.helloFailed(err)
		return nil, member, false
	}
	return up.GetHello(), member, true
}

// checkHelloKey is the cheap part of an enrollment's key check, done before
// a stranger's hello is charged to the connection rate: the installer key
// parses, is signed by this site's key, and is within its window. enroll
// checks the installer record (deleted installers) again after admission.
// A removed peer passes whatever its key: registerPeer tells it to
// uninstall (its tombstone may outlive its key's window).
func (s *Service) checkHelloKey(remote peer.ID, hello *pb.PeerHello) error {
	_, err := installerkey.Verify(hello.GetInstallerKey(), installerkey.VerifyOptions{Site: s.siteID, Now: s.clock.Now()})
	if err != nil && s.peers.tombstone(remote) != nil {
		return nil
	}
	return err
}
