package peer

import (
	"context"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh/dht"
)

// Finding the site through its relays (issue 16 part 2: "the private DHT
// finds the others"). A peer dials the coordinator addresses of its key
// and those the site last sent (siteaddrs.go); an online peer is told at
// once when coordinators join or leave. What that leaves is a peer that
// was away while the site's coordinators changed: restarted, it knows
// only addresses where no coordinator listens any more. The site's relays
// are DHT servers (mesh/dht) that know every live coordinator's address:
// each asks a coordinator for its ACL every 30 s and is told them on
// every answer. So when the peer cannot reach any address it knows three
// times in a row (lookupAfter + 1: a coordinator restarting is back by
// then, and its peers do not all ask the relays at once; at most once a
// minute after that), it asks the relays it knows — those it holds a reservation
// on, and those the site last named, kept in state.json — where the
// site's ID is (one FIND_NODE each, dht.AskTimeout), and dials what they
// answer with its own addresses.
//
// What is trusted: nothing but the dial. An answer is a hint: the secure
// handshake proves the site's ID, so a relay (or anyone answering in its
// place) that lies costs failed dials, never a session with someone
// else. The answers are kept in memory only, at most
// mesh.MaxCoordinatorAddrs, replaced by the next lookup and dropped by
// the next welcome (whose list is the site's word on the peer's own
// stream), and never replace the key's or the learned addresses: a lying
// relay cannot make the peer forget where the site is.

// lookupCoordinators asks the relays where the site is and adds what
// they answer to the next dial. It returns how many addresses it added.
func (d *Daemon) lookupCoordinators(ctx context.Context) int {
	if d.config.PublicSiteAddress != "" || d.jumpoints != nil {
		return 0 // the operator said where the site is; or no relays at all
	}
	now := d.clock.Now()
	d.mu.Lock()
	recent := !d.lookedUp.IsZero() && now.Sub(d.lookedUp) < lookupEvery
	if !recent {
		d.lookedUp = now
	}
	d.mu.Unlock()
	if recent {
		return 0
	}
	servers := d.relayServers()
	if len(servers) == 0 {
		return 0
	}
	fresh, err := dht.LookupSite(ctx, d.host, d.site.ID, servers)
	if err != nil {
		d.log.Info("asking the relays where the site is", "relays", len(servers), "error", err)
		return 0
	}
	d.mu.Lock()
	known := slices.Clone(d.site.Addrs)
	d.foundAddrs = fresh
	d.mu.Unlock()
	added := 0
	for _, a := range fresh {
		if !slices.ContainsFunc(known, a.Equal) {
			added++
		}
	}
	if added > 0 {
		d.host.Peerstore().AddAddrs(d.site.ID, fresh, peerstore.TempAddrTTL)
		d.log.Info("coordinator addresses from the site's relays", "relays", len(servers), "addrs", fresh)
	}
	return added
}

// relayServers are the relays to ask: those held, and those the site
// last named (state.json), each once.
func (d *Daemon) relayServers() []peer.AddrInfo {
	var out []peer.AddrInfo
	for _, id := range d.reserver.Held() {
		out = append(out, peer.AddrInfo{ID: id})
	}
	d.mu.Lock()
	known := slices.Clone(d.state.RelayAddrs)
	d.mu.Unlock()
	var addrs []ma.Multiaddr
	for _, s := range known {
		if a, err := ma.NewMultiaddr(s); err == nil {
			addrs = append(addrs, a)
		}
	}
	infos, _ := peer.AddrInfosFromP2pAddrs(addrs...)
	for _, ai := range infos {
		if ai.ID == d.site.ID || ai.ID == d.host.ID() {
			continue
		}
		if i := slices.IndexFunc(out, func(o peer.AddrInfo) bool { return o.ID == ai.ID }); i >= 0 {
			out[i].Addrs = ai.Addrs
		} else if len(out) < maxRelayServers {
			out = append(out, ai)
		}
	}
	return out
}

// lookupAfter is the failed attempts in a row after which the peer asks
// the relays, and lookupEvery how often at most.
const (
	lookupAfter = 2
	lookupEvery = time.Minute
)

// maxRelayServers bounds the relays one lookup asks (a state file is the
// host's user's to write).
const maxRelayServers = 8
