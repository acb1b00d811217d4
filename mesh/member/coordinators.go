package member

import (
	"slices"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Several coordinators (issue 16 part 2). A site may run several
// coordinators on one store, all with the site key: one peer ID at several
// addresses. Every control answer carries every live coordinator's
// addresses (pb.Response.coordinator_addrs; the login answer's site_addrs
// too). A member keeps them in its config file after the address it
// logged in with (Config.Coordinator), and its host dials them all at
// once whenever it connects: whichever coordinator answers with the
// site's ID serves it. A console run while one coordinator is down, a
// relay or a jumpoint restarted after one died, reaches another.
//
// The list is a hint: it comes only on streams to the site's ID (the
// secure handshake proved it), addresses naming another peer ID are
// dropped (mesh.CoordinatorAddrs), and an address where another host
// answers fails its handshake. An answer without a usable address keeps
// the last list; the login address is never dropped.

// mergeCoordinators is cfg's coordinator list with learned (without /p2p/)
// in place of what it learned before: the first address (the one logged
// in with) stays first. It reports whether the list changed, and the
// addresses learned before that are not in it any more.
func mergeCoordinators(cfg *Config, site peer.ID, learned []ma.Multiaddr) (changed bool, gone []ma.Multiaddr) {
	var first ma.Multiaddr
	var before []ma.Multiaddr
	for i, s := range cfg.Coordinator {
		a, err := ma.NewMultiaddr(s)
		if err != nil {
			continue
		}
		if a = mesh.CoordinatorAddr(site, a); a == nil {
			continue
		}
		if i == 0 {
			first = a
			continue
		}
		before = append(before, a)
	}
	next := learned
	if first != nil {
		next = mesh.MergeAddrs([]ma.Multiaddr{first}, learned)
		before = append([]ma.Multiaddr{first}, before...)
	}
	if mesh.SameAddrs(before, next) {
		return false, nil
	}
	for _, a := range before {
		if !slices.ContainsFunc(next, a.Equal) {
			gone = append(gone, a)
		}
	}
	full, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: site, Addrs: next})
	if err != nil {
		return false, nil
	}
	list := make([]string, 0, len(full))
	if first != nil {
		list = append(list, cfg.Coordinator[0]) // as the user wrote it
		full = full[1:]
	}
	for _, a := range full {
		list = append(list, a.String())
	}
	cfg.Coordinator = list
	return true, gone
}

// learn keeps the coordinator addresses a control answer carried (raw,
// binary multiaddrs): they go into the config file and the host's
// peerstore, so the next connect dials them too, and the site's addresses
// follow. It does nothing when raw holds no usable address, and reports
// whether the list changed.
func (c *Client) learn(raw [][]byte) bool {
	learned, _ := mesh.CoordinatorAddrs(c.site.ID, raw)
	if len(learned) == 0 || c.files.Dir == "" {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	cfg := *c.config
	changed, gone := mergeCoordinators(&cfg, c.site.ID, learned)
	if !changed {
		return false
	}
	info, err := cfg.SiteInfo()
	if err != nil || info.ID != c.site.ID {
		return false
	}
	if err := c.files.SaveConfig(&cfg); err != nil {
		return false // the next answer tries again
	}
	c.config.Coordinator = cfg.Coordinator
	c.site.Addrs = info.Addrs
	forget(c.host, c.site.ID, gone)
	c.host.Peerstore().AddAddrs(c.site.ID, info.Addrs, peerstore.PermanentAddrTTL)
	return true
}

// forget takes the addresses of coordinators gone from the site out of
// h's peerstore.
func forget(h host.Host, site peer.ID, gone []ma.Multiaddr) {
	for _, a := range gone {
		h.Peerstore().SetAddr(site, a, 0)
	}
}

// parseCoordinator reads a coordinator address as a user gives it: a
// multiaddr ending in /p2p/<site>.
func parseCoordinator(addr string) (*peer.AddrInfo, error) {
	target, err := ma.NewMultiaddr(addr)
	if err != nil {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "%q is not a multiaddr: %v", addr, err)
	}
	info, err := peer.AddrInfoFromP2pAddr(target)
	if err != nil {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "The coordinator address %s must end in /p2p/<site peer ID> (coordinator init prints it).", addr)
	}
	return info, nil
}

// hint adds addr, a coordinator address the daemon's operator gave (a
// multiaddr ending in /p2p/<site>), to those this client dials, for this
// run only: a coordinator's answer is what the config keeps (learn). An
// address of another site is refused: the directory's key is enrolled in
// this one.
func (c *Client) hint(addr string) error {
	info, err := parseCoordinator(addr)
	if err != nil {
		return err
	}
	if info.ID != c.site.ID {
		return catalog.Errorf(catalog.CodeInvalidArgument,
			"(the coordinator address %s is site %s's; this directory is enrolled in site %s: give one of its coordinators' addresses, or remove the directory and enroll again)",
			addr, info.ID, c.site.ID)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range info.Addrs {
		if !slices.ContainsFunc(c.site.Addrs, a.Equal) {
			c.site.Addrs = append(slices.Clip(c.site.Addrs), a)
		}
	}
	c.host.Peerstore().AddAddrs(c.site.ID, info.Addrs, peerstore.PermanentAddrTTL)
	return nil
}

// KeepAnswer keeps in cfg, f's config as the caller loaded it for site,
// what an answer to a call made without the member's client tells
// (control.Conn: `jumpmesh ls`), as Call does: every coordinator address
// and the members' lane. cfg is updated, and the file written, only when
// they changed. The answer must have come on a connection whose handshake
// proved site.
func (f Files) KeepAnswer(cfg *Config, site peer.ID, resp *pb.Response) error {
	changed := false
	if learned, _ := mesh.CoordinatorAddrs(site, resp.GetCoordinatorAddrs()); len(learned) > 0 {
		changed, _ = mergeCoordinators(cfg, site, learned)
	}
	if lane := laneList(site, resp.GetMemberLane()); !slices.Equal(lane, cfg.Lane) {
		cfg.Lane, changed = lane, true
	}
	if !changed {
		return nil
	}
	return f.SaveConfig(cfg)
}
