package coordinator

import (
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// PeerOnlineForTest reports whether the service sees id online, here or
// held by another coordinator of the site.
func (s *Service) PeerOnlineForTest(id peer.ID) bool {
	_, online := s.peers.get(id)
	return online
}

// HostAddrsForTest is where the service would say peer id is: its host's
// view, or the presence record of the coordinator that holds it.
func (s *Service) HostAddrsForTest(id peer.ID) []ma.Multiaddr { return s.hostAddrs(id) }
