package coordinator

import (
	ma "github.com/multiformats/go-multiaddr"
)

// Where clients learn the site's coordinators (issue 16 part 2; the
// clients' side is in peer/siteaddrs.go and mesh/member). Every party that
// reaches the site — peers, consoles, relays, jumpoints — is told every
// live coordinator's addresses: in installer keys and login answers, in a
// peer's welcome and its settings updates, and on every control answer
// (pb.Response.coordinator_addrs). It keeps the last list and dials all of
// them, with the site's one peer ID, when it reconnects: whichever
// coordinator answers serves it.

// coordinatorAddrs are the addresses of every live coordinator of the
// site, without /p2p/ (they share the site's peer ID), this one's first.
func (s *Service) coordinatorAddrs() []ma.Multiaddr {
	return s.addrs()
}
