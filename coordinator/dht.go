package coordinator

import (
	"log/slog"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/dht"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// The coordinator is a server of the site's private DHT (mesh/dht): the
// fallback for finding a peer's addresses when the registry's do not
// answer. Its registry stays the authority; the DHT stores nothing.
// Relays enter its routing table; users (technicians, administrators,
// relays) may query it; peers need not (they announce themselves by being
// connected, and identify tells the coordinator their addresses).

// startDHT runs the coordinator's DHT server on its host.
func (c *Coordinator) startDHT(log *slog.Logger) (err error) {
	s := c.service
	c.dht, err = dht.New(c.host, dht.Config{Site: c.site.ID,
		Infra: s.isRelay, Member: s.isUser, Bootstrap: s.relayInfos, Logger: log})
	return err
}

// DHT is the coordinator's node of the site DHT.
func (c *Coordinator) DHT() *dht.Node { return c.dht }

// userOf is the user whose key id is, or nil.
func (s *Service) userOf(id peer.ID) *pb.User {
	u, err := s.userByKey(id)
	if err != nil {
		s.log.Warn("site DHT: looking up a key", logRemote, id, logError, err)
	}
	return u
}

// isUser reports whether id is a user's key: who may query the DHT.
func (s *Service) isUser(id peer.ID) bool { return s.userOf(id) != nil }

// isRelay reports whether id is a relay's key: who enters the DHT's
// routing table (jumpoints will too).
func (s *Service) isRelay(id peer.ID) bool {
	return s.userOf(id).GetRole() == pb.Role_ROLE_RELAY
}

// relayInfos are the relays handed out, for the DHT to bootstrap from.
func (s *Service) relayInfos() []peer.AddrInfo {
	infos, err := peer.AddrInfosFromP2pAddrs(s.relayAddrs()...)
	if err != nil {
		return nil
	}
	return infos
}
