package member

import (
	"context"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/dht"
)

// Finding the site through its relays (issue 16 part 2: "the private DHT
// finds the others"). A member keeps every coordinator address the site's
// answers carried (coordinators.go); what that leaves is a member that
// was away while the site's coordinators changed: it knows only addresses
// where no coordinator listens any more. The site's relays are servers of
// its DHT (mesh/dht) that know every live coordinator's address (each asks
// a coordinator for its ACL every 30 s and is told them on every answer).
// So a member that cannot reach any coordinator address it knows asks the
// relays it knows where the site's ID is, and dials what they answer.
//
// Which relays: a console keeps those its last jump was handed
// (JumpResponse.relays) in its config file (Config.Relays, at most
// MaxRelays); a jumpoint those of its ACL, kept the same way; a relay the
// others its ACL answers name (RelayACL.relays), kept the same way, and
// the servers of its DHT's routing table, asked live (FindSiteAlso). A
// peer does the same with its reservations and state.json
// (peer/coorddht.go).
//
// What is trusted: nothing but the dial. An answer is a hint: the secure
// handshake proves the site's ID, so a relay (or anyone answering in its
// place, or the file's user who wrote the relay list) that lies costs a
// failed dial, never a session with someone else. Found addresses go into
// the host's peerstore for a short time only (peerstore.TempAddrTTL) and
// never into the config file: a coordinator's own answer, on a stream the
// handshake proved, is what the member keeps (learn).

// MaxRelays bounds the relays a member keeps in its config and asks in
// one lookup (a config file is its user's to write).
const MaxRelays = 8

// FindEvery bounds how often one member asks the relays.
const FindEvery = time.Minute

// relayInfos are the relays among addrs (multiaddrs with /p2p/): neither
// the site nor self, each once, at most MaxRelays. Addresses that do not
// parse are left out.
func relayInfos(addrs []ma.Multiaddr, site, self peer.ID) []peer.AddrInfo {
	infos := make([]peer.AddrInfo, 0, len(addrs))
	for _, a := range addrs {
		if info, err := peer.AddrInfoFromP2pAddr(a); err == nil {
			infos = append(infos, *info)
		}
	}
	return appendServers(nil, infos, site, self)
}

// relayList is raw (binary multiaddrs with /p2p/) as the config keeps it:
// the relays' addresses as strings, sorted, at most MaxRelays relays.
func relayList(raw [][]byte, site, self peer.ID) []string {
	infos := relayInfos(mesh.DecodeAddrs(raw), site, self)
	var out []string
	for _, info := range infos {
		full, err := peer.AddrInfoToP2pAddrs(&info)
		if err != nil {
			continue
		}
		for _, a := range full {
			out = append(out, a.String())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (c *Config) relayInfos(site, self peer.ID) []peer.AddrInfo {
	addrs, _ := mesh.ParseMultiaddrs(c.Relays)
	return relayInfos(addrs, site, self)
}

// LearnRelays keeps the relays raw names (binary multiaddrs with /p2p/,
// as a jump's answer or a jumpoint's ACL carries them) in the config
// file. It does nothing when raw names none, and reports whether the list
// changed.
func (c *Client) LearnRelays(raw [][]byte) (bool, error) {
	list := relayList(raw, c.site.ID, c.host.ID())
	if len(list) == 0 || c.files.Dir == "" {
		return false, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if slices.Equal(c.config.Relays, list) {
		return false, nil
	}
	cfg := *c.config
	cfg.Relays = list
	if err := c.files.SaveConfig(&cfg); err != nil {
		return false, err // the next answer tries again
	}
	c.config.Relays = list
	return true, nil
}

// FindSiteAlso names more servers of the site's DHT that findSite asks
// (after the relays the config keeps, MaxRelays in all): a relay asks the
// DHT servers it knows as well as the relays its config keeps.
func (c *Client) FindSiteAlso(servers func() []peer.AddrInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.siteServers = servers
}

// findSite is connect's fallback after no coordinator address answered:
// at most once every FindEvery, it asks the relays the config keeps where
// the site is, and reports whether they named an address the member did
// not know (then in the peerstore for a short time: the caller dials
// again).
func (c *Client) findSite(ctx context.Context) bool {
	c.mu.Lock()
	now := time.Now()
	var relays []peer.AddrInfo
	if c.foundAt.IsZero() || now.Sub(c.foundAt) >= FindEvery {
		relays = c.config.relayInfos(c.site.ID, c.host.ID())
		if c.siteServers != nil {
			relays = appendServers(relays, c.siteServers(), c.site.ID, c.host.ID())
		}
	}
	if len(relays) > 0 {
		c.foundAt = now // a member that knew no relay may ask once it does
	}
	known := slices.Clone(c.site.Addrs)
	log := c.log
	c.mu.Unlock()
	if len(relays) == 0 {
		return false
	}
	found, err := dht.LookupSite(ctx, c.host, c.site.ID, relays)
	if err != nil {
		if log != nil {
			log.Info("asking the site's relays where its coordinators are", "relays", len(relays), "error", err)
		}
		return false
	}
	var fresh []ma.Multiaddr
	for _, a := range found {
		if !slices.ContainsFunc(known, a.Equal) {
			fresh = append(fresh, a)
		}
	}
	if len(fresh) == 0 {
		return false
	}
	if log != nil {
		log.Info("coordinator addresses from the site's relays", "relays", len(relays), "addrs", fresh)
	}
	c.host.Peerstore().AddAddrs(c.site.ID, found, peerstore.TempAddrTTL)
	return true
}

// appendServers adds servers to relays: neither the site nor self, a
// server already there adding its addresses to it, at most MaxRelays in
// all.
func appendServers(relays, servers []peer.AddrInfo, site, self peer.ID) []peer.AddrInfo {
	for _, s := range servers {
		if s.ID == site || s.ID == self {
			continue
		}
		if i := slices.IndexFunc(relays, func(r peer.AddrInfo) bool { return r.ID == s.ID }); i >= 0 {
			relays[i].Addrs = append(relays[i].Addrs, s.Addrs...)
		} else if len(relays) < MaxRelays {
			relays = append(relays, s)
		}
	}
	return relays
}
