package coordinator

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Revocation: a grant is checked when it is issued, and a peer then lets it
// open channels on its connection for minutes (grant.Limits.OpenFor). When
// something those checks read changes for the worse — a user removed, a
// peer's group or policies changed, a session policy's rules changed, a
// jump window closed — the coordinator pushes PeerDown{revoke} to the
// online peers concerned, which refuse the grants issued until then and
// close the channels they opened (peer/doc.go, step 8; mesh/grant/doc.go).
//
// Grants and revocations share one timeline on the coordinator's clock, in
// the grant's whole seconds: a revocation covers every grant issued at or
// before its stamp, and a grant issued after a revocation is stamped at
// least a second later, even within the same second or with a clock that
// stands still (tests). A grant is stamped before its checks read the
// store, and a revocation after the change it follows is committed, so a
// grant whose checks may have read the old state is always covered.

// JumpWindowCheck is how often the coordinator looks, on its clock, for
// online peers whose jump window has closed.
const JumpWindowCheck = 5 * time.Second

// revoker orders grants and revocations.
type revoker struct {
	mu         sync.Mutex
	lastGrant  int64
	lastRevoke int64
	// windowShut: online peers whose jump window was closed at the last
	// check (so a closed window is revoked once, when it closes).
	windowShut map[peer.ID]bool
}

// grantTime is the time a grant about to be checked is issued at: now, or
// the second after the latest revocation if that is later.
func (r *revoker) grantTime(now time.Time) time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now.Unix() <= r.lastRevoke {
		now = time.Unix(r.lastRevoke+1, 0).In(now.Location())
	}
	r.lastGrant = max(r.lastGrant, now.Unix())
	return now
}

// stamp is a new revocation's issued_through: it covers every grant
// stamped so far.
func (r *revoker) stamp(now time.Time) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastRevoke = max(now.Unix(), r.lastGrant, r.lastRevoke)
	return r.lastRevoke
}

// revokeTechnicians withdraws the grants issued so far to the console keys
// techs, on every online peer (the coordinator does not keep which peers a
// technician reached; a revocation a peer does not need costs it a map
// lookup): those it holds, and, through follow.go, the other
// coordinators'.
func (s *Service) revokeTechnicians(techs [][]byte, reason string) {
	if len(techs) == 0 {
		return
	}
	s.pushRevoke(s.peers.sessions(), &pb.PeerRevoke{Technicians: techs, Reason: reason})
	s.publishRevoke(&siteRevoke{Technicians: techs, Reason: reason})
}

// revokeTechniciansOn withdraws the grants issued so far to the console
// keys techs for the peers ids, on those that are online.
func (s *Service) revokeTechniciansOn(ids []peer.ID, techs [][]byte, reason string) {
	if len(techs) == 0 {
		return
	}
	s.pushRevoke(s.onlineSessions(ids), &pb.PeerRevoke{Technicians: techs, Reason: reason})
	if len(ids) > 0 {
		s.publishRevoke(&siteRevoke{Technicians: techs, Peers: peerIDBytes(ids), Reason: reason})
	}
}

// revokePeers withdraws every technician's grants issued so far for ids,
// on those that are online.
func (s *Service) revokePeers(ids []peer.ID, reason string) {
	s.pushRevoke(s.onlineSessions(ids), &pb.PeerRevoke{All: true, Reason: reason})
	if len(ids) > 0 {
		s.publishRevoke(&siteRevoke{Peers: peerIDBytes(ids), All: true, Reason: reason})
	}
}

func (s *Service) onlineSessions(ids []peer.ID) []*peerSession {
	var out []*peerSession
	for _, id := range ids {
		if sess := s.peers.session(id); sess != nil {
			out = append(out, sess)
		}
	}
	return out
}

// pushRevoke stamps m now and queues it to sessions (push.go): the
// admin's request does not wait for slow peers, and a peer that does not
// take it is disconnected.
func (s *Service) pushRevoke(sessions []*peerSession, m *pb.PeerRevoke) {
	m.IssuedThroughUnix = s.revoker.stamp(s.clock.Now())
	down := &pb.PeerDown{Body: &pb.PeerDown_Revoke{Revoke: m}}
	told := 0
	for _, sess := range sessions {
		if s.push(sess, down) {
			told++
		}
	}
	s.log.Info("revoking grants", "reason", m.GetReason(), "all", m.GetAll(), "technicians", len(m.GetTechnicians()),
		"through", m.GetIssuedThroughUnix(), "peers", told)
}

// accessChanged reports whether a peer's settings changed in what grants
// are checked against: who sees it (group) and what its policies allow.
func accessChanged(old, cur *pb.InstallerDefaults) bool {
	return old.GetGroup() != cur.GetGroup() || old.GetJumpPolicy() != cur.GetJumpPolicy() ||
		old.GetSessionPolicyPresent() != cur.GetSessionPolicyPresent() ||
		old.GetSessionPolicyNotPresent() != cur.GetSessionPolicyNotPresent()
}

// onlinePeersWhere lists the online peers whose settings match.
func (s *Service) onlinePeersWhere(match func(*pb.InstallerDefaults) bool) []peer.ID {
	var out []peer.ID
	for _, p := range s.peers.snapshot() {
		if p.online && match(p.rec.GetSettings()) {
			out = append(out, peer.ID(p.rec.GetId()))
		}
	}
	return out
}

// usesSessionPolicy matches peers whose settings name the session policy.
func usesSessionPolicy(name string) func(*pb.InstallerDefaults) bool {
	return func(st *pb.InstallerDefaults) bool {
		return st.GetSessionPolicyPresent() == name || st.GetSessionPolicyNotPresent() == name
	}
}

// inGroup matches peers in the jump group.
func inGroup(group string) func(*pb.InstallerDefaults) bool {
	return func(st *pb.InstallerDefaults) bool { return st.GetGroup() == group }
}

// CheckJumpWindows revokes the grants of online peers whose jump window
// has closed since the last check (a missing policy counts as closed), and
// returns how many peers it told. The coordinator runs it every
// JumpWindowCheck and when a jump policy changes; tests call it after
// moving the clock.
func (s *Service) CheckJumpWindows(now time.Time) int {
	closedNow := map[string]bool{} // by policy: each is evaluated once
	err := s.view(func(tx *Tx) error {
		all, err := tx.JumpPolicies()
		for _, p := range all {
			open, err := JumpPolicyAllows(p, now)
			closedNow[p.GetName()] = !open || err != nil
		}
		return err
	})
	if err != nil {
		s.log.Warn("checking jump windows", logError, err)
		return 0
	}
	shut := map[peer.ID]bool{} // online peers whose window is closed
	for _, p := range s.peers.snapshot() {
		name := p.rec.GetSettings().GetJumpPolicy()
		if !p.online || name == "" {
			continue
		}
		if isClosed, known := closedNow[name]; isClosed || !known { // a missing policy denies
			shut[peer.ID(p.rec.GetId())] = true
		}
	}
	s.revoker.mu.Lock()
	var closed []peer.ID
	for id, isShut := range shut {
		if isShut && !s.revoker.windowShut[id] {
			closed = append(closed, id)
		}
	}
	s.revoker.windowShut = shut
	s.revoker.mu.Unlock()
	if len(closed) > 0 {
		// Not published: every coordinator checks its own peers' windows.
		s.pushRevoke(s.onlineSessions(closed), &pb.PeerRevoke{All: true, Reason: "jump window closed"})
	}
	return len(closed)
}
