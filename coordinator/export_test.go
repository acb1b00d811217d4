package coordinator

import "github.com/libp2p/go-libp2p/core/peer"

// PeerOnlineForTest reports whether the service sees id online, here or
// held by another coordinator of the site.
func (s *Service) PeerOnlineForTest(id peer.ID) bool {
	_, online := s.peers.get(id)
	return online
}
