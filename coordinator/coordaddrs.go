package coordinator

import (
	"sync"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
)

// Where clients learn the site's coordinators (issue 16 part 2; the
// clients' side is in peer/siteaddrs.go and mesh/member). Every party that
// reaches the site — peers, consoles, relays, jumpoints — is told every
// live coordinator's addresses: in installer keys and login answers, in a
// peer's welcome and its settings updates, in a jumpoint's ACL, and on
// every control answer (pb.Response.coordinator_addrs). It keeps the last
// list and dials all of them, with the site's one peer ID, when it
// reconnects: whichever coordinator answers serves it.
//
// When the site's coordinators change (one joins, leaves, or its lease
// ends: members.go), every peer this coordinator holds is sent a settings
// update, which carries the new list, through its send queue (push.go):
// a peer held by a survivor learns of a coordinator that joined before
// the survivor dies too. The update is queued only when the list of
// addresses changed, and a peer's queue holds one pending update at most,
// so a flapping member costs each peer one update at a time.

// coordinatorAddrs are the addresses of every live coordinator of the
// site, without /p2p/ (they share the site's peer ID), this one's first.
func (s *Service) coordinatorAddrs() []ma.Multiaddr {
	return s.memberAddrs()
}

// tellPeersOfMembers pushes the new list of coordinator addresses to the
// online peers whenever the site's members change it.
func (s *Service) tellPeersOfMembers() {
	var mu sync.Mutex
	last := s.coordinatorAddrs()
	s.onMembersChanged(func() {
		now := s.coordinatorAddrs()
		mu.Lock()
		same := mesh.SameAddrs(last, now)
		last = now
		mu.Unlock()
		if !same {
			told := s.pushSettings()
			s.log.Info("coordinators changed; telling online peers", "addrs", len(now), "peers", told)
		}
	})
}
