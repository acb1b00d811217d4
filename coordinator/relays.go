package coordinator

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Relays are enrolled like users (role relay, by invite) so they
// authenticate the same way; they may only refresh the relay ACL, which
// also reports where they listen. The coordinator hands the live relays to
// peers (to keep reservations) and consoles (to reach peers through them).

// RelayRefresh is how often relays fetch the ACL; a relay that has not
// refreshed for three periods is no longer handed out.
const RelayRefresh = 30 * time.Second

// relayBook remembers where each relay listens and when it last refreshed.
type relayBook struct {
	mu     sync.Mutex
	relays map[peer.ID]relaySeen
}

type relaySeen struct {
	addrs []ma.Multiaddr
	at    time.Time
}

// seen records a refresh and reports whether the relay is new or came back.
func (b *relayBook) seen(id peer.ID, addrs []ma.Multiaddr, now time.Time) (fresh bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.relays == nil {
		b.relays = map[peer.ID]relaySeen{}
	}
	old, known := b.relays[id]
	b.relays[id] = relaySeen{addrs: addrs, at: now}
	return !known || now.Sub(old.at) > 3*RelayRefresh
}

// live returns the relays that refreshed recently, as /p2p/ addresses.
func (b *relayBook) live(now time.Time) []ma.Multiaddr {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []ma.Multiaddr
	for id, r := range b.relays {
		if now.Sub(r.at) > 3*RelayRefresh {
			continue
		}
		full, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: id, Addrs: r.addrs})
		if err == nil {
			out = append(out, full...)
		}
	}
	return out
}

func (s *Service) dispatchRelay(c *caller, req *pb.Request) (*pb.Response, error) {
	switch b := req.GetBody().(type) {
	case *pb.Request_RelayAcl:
		return s.relayACL(c, b.RelayAcl)
	case *pb.Request_Whoami:
		return s.userShow(c, c.name())
	}
	return nil, catalog.Errorf(catalog.CodePermissionDenied, "(a relay may only fetch the relay ACL)")
}

// relayACL records the relay's addresses and returns the site's members:
// the coordinator, every peer not deleted, every user's keys.
func (s *Service) relayACL(c *caller, r *pb.RelayACLRequest) (*pb.Response, error) {
	if s.relayBook.seen(c.peer, mesh.DecodeAddrs(r.GetAddrs()), s.clock.Now()) {
		s.pushSettings() // online peers learn of the relay now
	}
	members := [][]byte{[]byte(s.siteID)}
	for _, p := range s.peers.snapshot() {
		if p.rec.GetDeletedUnix() == 0 {
			members = append(members, p.rec.GetId())
		}
	}
	err := s.view(func(tx *Tx) error {
		users, err := tx.Users()
		for _, u := range users {
			members = append(members, u.GetPeerIds()...)
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	return &pb.Response{Body: &pb.Response_RelayAcl{RelayAcl: &pb.RelayACL{Members: members, RefreshSeconds: int64(RelayRefresh / time.Second)}}}, nil
}

// relayAddrs are the relays handed out: configured ones and live enrolled ones.
func (s *Service) relayAddrs() []ma.Multiaddr {
	return append(append([]ma.Multiaddr(nil), s.relays...), s.relayBook.live(s.clock.Now())...)
}

// peerAddrs are where the console may reach a peer: what the coordinator's
// host learned (identify; public addresses only when the peer connects from
// a public one) and the listen addresses the peer reported itself (its LAN
// addresses, for consoles on the same network), within the console's
// scope (addrscope.go: no loopback address to another host).
func (s *Service) peerAddrs(console, id peer.ID) []ma.Multiaddr {
	scope := s.scopeFor(console, id)
	out := scope.filter(s.hostAddrs(id))
	rec, _ := s.peers.get(id)
	for _, a := range scope.filter(mesh.DecodeAddrs(rec.GetInfo().GetListenAddrs())) {
		dup := false
		for _, o := range out {
			if o.Equal(a) {
				dup = true
				break
			}
		}
		if !dup {
			out = append(out, a)
		}
	}
	return out
}
