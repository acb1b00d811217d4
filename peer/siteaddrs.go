package peer

import (
	"slices"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
)

// Failing over between coordinators (issue 16 part 2). A site may run
// several coordinators on one store; they share the site key, so the peer
// knows them as one peer ID at several addresses. The peer dials the
// installer key's addresses and the list the site last sent (every
// welcome and settings update carries every live coordinator's
// addresses), all at once: libp2p dials a peer ID's addresses in parallel
// (its ranker staggers them by at most 250 ms each, 30 ms on a private
// network) and keeps the first that proves the site's ID in its secure
// handshake, so a dead coordinator's address neither holds the dial nor
// can be answered by anyone but the site. The list is kept in state.json
// (State.SiteAddrs), so a peer restarted while the coordinator it knew is
// gone still reaches the others.
//
// What is trusted: the list comes only on the peer's own stream to the
// site's ID, and even so it is a hint to dial, never a trust decision. An
// address naming another peer ID is dropped; an address where another
// host answers fails its handshake (the dial checks the ID); a list with
// nothing usable (garbage, a coordinator from before this field) keeps
// the last one. A peer installed with --jc-public-site-address dials only
// that address: its operator said where the site is (a load balancer or a
// DNS name in front of the coordinators).

// coordinator is the site's peer ID and every address the peer dials it
// at now.
func (d *Daemon) coordinator() peer.AddrInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	return peer.AddrInfo{ID: d.site.ID, Addrs: mesh.MergeAddrs(d.site.Addrs, mesh.PreferTCP(d.foundAddrs))}
}

// learnSiteAddrs keeps the coordinator addresses a welcome or an update
// sent (raw, binary multiaddrs): persisted in state.json, added to what
// the next dial tries. It keeps the last list when raw holds nothing
// usable.
func (d *Daemon) learnSiteAddrs(raw [][]byte) {
	if len(raw) == 0 {
		return // a coordinator from before several coordinators
	}
	kept, dropped := mesh.CoordinatorAddrs(d.site.ID, raw)
	if dropped > 0 {
		d.log.Warn("coordinator addresses: skipped some the site sent", "dropped", dropped, "kept", len(kept))
	}
	if len(kept) == 0 || d.config.PublicSiteAddress != "" {
		return
	}
	d.mu.Lock()
	old := parseSiteAddrs(d.site.ID, d.state.SiteAddrs)
	d.mu.Unlock()
	if mesh.SameAddrs(old, kept) {
		return
	}
	strs := make([]string, len(kept))
	for i, a := range kept {
		strs[i] = a.String()
	}
	d.updateState(func(s *State) { s.SiteAddrs = strs })
	d.mu.Lock()
	d.site.Addrs = dialSiteAddrs(d.keyAddrs, kept)
	d.foundAddrs = nil // the site's word supersedes the relays' (coorddht.go)
	d.mu.Unlock()
	ps := d.host.Peerstore()
	for _, a := range old {
		if !slices.ContainsFunc(kept, a.Equal) && !slices.ContainsFunc(d.keyAddrs, a.Equal) {
			ps.SetAddr(d.site.ID, a, 0) // a coordinator gone from the site
		}
	}
	ps.AddAddrs(d.site.ID, kept, peerstore.PermanentAddrTTL)
	d.log.Info("coordinator addresses", "addrs", strs)
}

// parseSiteAddrs reads a persisted list, skipping what is not a
// coordinator address of site (a state file is the peer's user's to
// write; the dial checks the ID anyway).
func parseSiteAddrs(site peer.ID, list []string) []ma.Multiaddr {
	var out []ma.Multiaddr
	for _, s := range list {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			continue
		}
		if a = mesh.CoordinatorAddr(site, a); a != nil && !slices.ContainsFunc(out, a.Equal) && len(out) < mesh.MaxCoordinatorAddrs {
			out = append(out, a)
		}
	}
	return out
}

// dialSiteAddrs are the addresses the peer dials its coordinator at: the
// key's, then the learned ones, TCP only when there is TCP (siteAddrInfo).
func dialSiteAddrs(key, learned []ma.Multiaddr) []ma.Multiaddr {
	return mesh.PreferTCP(mesh.MergeAddrs(key, learned))
}
