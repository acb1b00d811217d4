package relay

import (
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/dht"
)

// A relay is a server of the site's private DHT (mesh/dht), next to the
// coordinator: the peers holding reservations on it are connected to it,
// so it knows their current addresses, and consoles ask it when the
// coordinator's do not answer. Its ACL says who is a member; it cannot
// tell a relay from a console in it, so any member that serves the DHT
// may enter its routing table (peers and consoles never serve it).

// startDHT runs the relay's DHT server on its host.
func (r *Relay) startDHT() (err error) {
	r.dht, err = dht.New(r.host, dht.Config{Site: r.site.ID,
		Infra: r.acl.IsMember, Member: r.acl.IsMember, Bootstrap: r.coordinator, Logger: r.log})
	return err
}

// DHT is the relay's node of the site DHT.
func (r *Relay) DHT() *dht.Node { return r.dht }

// dhtServers are the DHT servers in the relay's routing table but the
// site's own ID that the relay can reach (it knows an address or holds a
// connection): asked where the site is when no coordinator address the
// relay knows answers (mesh/member's findsite.go: a relay asks these and
// the relays its config keeps from its ACL answers).
func (r *Relay) dhtServers() []peer.AddrInfo {
	if r.dht == nil {
		return nil
	}
	var out []peer.AddrInfo
	for _, id := range r.dht.RoutingTable() {
		if id == r.site.ID {
			continue
		}
		addrs := r.host.Peerstore().Addrs(id)
		if len(addrs) > 0 || r.host.Network().Connectedness(id) == network.Connected {
			out = append(out, peer.AddrInfo{ID: id, Addrs: addrs})
		}
	}
	return out
}

// coordinator is where the relay enrolled, for the DHT to bootstrap from.
func (r *Relay) coordinator() []peer.AddrInfo { return []peer.AddrInfo{r.site} }
