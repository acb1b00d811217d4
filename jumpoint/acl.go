package jumpoint

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh/allowlist"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// ACL is one answer of the coordinator (pb.JumpointACL): whom the jumpoint
// serves and where they may go. It is never changed once built; the
// jumpoint swaps in a new one at each refresh.
type ACL struct {
	// Name is the jumpoint's name at the site.
	Name string
	// Technicians are the console keys of the site's technicians and
	// administrators; each tunnel of theirs still needs a grant.
	Technicians map[peer.ID]struct{}
	// Peers are the peers installed to talk through this jumpoint.
	Peers map[peer.ID]struct{}
	// SiteTargets are the TCP addresses (canonical host:port) of the
	// coordinator and the site's live relays: where the peers may go.
	SiteTargets map[string]struct{}
	// CoordinatorTargets are those of SiteTargets that are the
	// coordinator's: where a host enrolling with an installer key may go.
	CoordinatorTargets map[string]struct{}
	// Refresh is the period the coordinator asked for (zero: none).
	Refresh time.Duration
	// Allow is the agentless allow list: where technicians with a grant
	// naming a target may go without a peer there (rule 4 of Authorize).
	Allow *allowlist.List
}

// NewACL builds an ACL from the coordinator's answer. site is the site's
// (the coordinator's) peer ID; addresses in m.site_addrs ending in its
// /p2p/ are the coordinator's. Addresses with DNS names must have been
// resolved (resolveSiteAddrs): tunnel targets are IP addresses, since
// libp2p resolves names before it dials. Entries that do not decode are
// skipped and returned as warnings; an ACL without a single site address
// is an error, since it would cut every peer off the site.
func NewACL(m *pb.JumpointACL, site peer.ID) (*ACL, []error, error) {
	a := &ACL{
		Name:               m.GetName(),
		Technicians:        make(map[peer.ID]struct{}, len(m.GetTechnicians())),
		Peers:              make(map[peer.ID]struct{}, len(m.GetPeers())),
		SiteTargets:        map[string]struct{}{},
		CoordinatorTargets: map[string]struct{}{},
		Refresh:            time.Duration(m.GetRefreshSeconds()) * time.Second,
	}
	var warnings []error
	for _, b := range m.GetTechnicians() {
		id, err := peer.IDFromBytes(b)
		if err != nil {
			warnings = append(warnings, catalog.Errorf(catalog.CodeProtocol, "(ACL technician: %v)", err))
			continue
		}
		a.Technicians[id] = struct{}{}
	}
	for _, b := range m.GetPeers() {
		id, err := peer.IDFromBytes(b)
		if err != nil {
			warnings = append(warnings, catalog.Errorf(catalog.CodeProtocol, "(ACL peer: %v)", err))
			continue
		}
		a.Peers[id] = struct{}{}
	}
	for _, b := range m.GetSiteAddrs() {
		addr, err := ma.NewMultiaddrBytes(b)
		if err != nil {
			warnings = append(warnings, catalog.Errorf(catalog.CodeProtocol, "(ACL site address: %v)", err))
			continue
		}
		info, err := peer.AddrInfoFromP2pAddr(addr)
		if err != nil {
			warnings = append(warnings, catalog.Errorf(catalog.CodeProtocol, "(ACL site address %s has no /p2p/: %v)", addr, err))
			continue
		}
		for _, t := range tcpTargets(info.Addrs) {
			a.SiteTargets[t] = struct{}{}
			if info.ID == site {
				a.CoordinatorTargets[t] = struct{}{}
			}
		}
	}
	allow, err := allowlist.Compile(m.GetAllow())
	if err != nil {
		// Fail closed: a list the jumpoint cannot read allows nothing.
		warnings = append(warnings, catalog.Errorf(catalog.CodeProtocol, "(ACL allow list: %v)", err))
		allow, _ = allowlist.Compile(nil)
	}
	a.Allow = allow
	if len(a.CoordinatorTargets) == 0 {
		return nil, warnings, catalog.Errorf(catalog.CodeProtocol, "(the coordinator sent a jumpoint ACL without a TCP address of its own)")
	}
	return a, warnings, nil
}

// IsPeer reports whether p is a peer behind this jumpoint.
func (a *ACL) IsPeer(p peer.ID) bool { _, ok := a.Peers[p]; return ok }

// IsTechnician reports whether p is a technician's console key.
func (a *ACL) IsTechnician(p peer.ID) bool { _, ok := a.Technicians[p]; return ok }

// tcpTargets are the canonical host:port of the TCP addresses among addrs
// (IP addresses only; /p2p/ suffixes are ignored).
func tcpTargets(addrs []ma.Multiaddr) []string {
	var out []string
	for _, a := range addrs {
		if t, ok := tcpTarget(a); ok {
			out = append(out, t)
		}
	}
	return out
}

// tcpTarget is the canonical host:port of a /ip4|ip6/…/tcp/… multiaddr.
func tcpTarget(a ma.Multiaddr) (string, bool) {
	var ip netip.Addr
	var port uint64
	var ok, tcp bool
	for i, c := range a {
		switch {
		case c.Code() == ma.P_CIRCUIT:
			return "", false // a relayed address: the relay's, not the peer's
		case i == 0 && (c.Code() == ma.P_IP4 || c.Code() == ma.P_IP6):
			ip, ok = netip.AddrFromSlice(c.RawValue())
		case i == 1 && c.Code() == ma.P_TCP:
			p, err := strconv.ParseUint(c.Value(), 10, 16)
			port, tcp = p, err == nil
		}
	}
	if !ok || !tcp || port == 0 {
		return "", false
	}
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)).String(), true
}

// canonical is a tunnel target (host:port, as in TunnelOpen.target) in
// the form the ACL's sets use, or false when it is not an IP address and
// a port: names are refused, since the caller's libp2p has resolved
// them, and a name would let a target's DNS decide where the jumpoint
// goes.
func canonical(target string) (string, bool) {
	ap, err := netip.ParseAddrPort(target)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
		return "", false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()).String(), true
}

// resolveSiteAddrs replaces each site address whose host is a DNS name
// (/dns, /dns4, /dns6) with one address per IP the name resolves to now,
// keeping its /p2p/. A name that does not resolve is dropped and
// reported; the others stay as they are.
func resolveSiteAddrs(ctx context.Context, raw [][]byte) ([][]byte, []error) {
	out := make([][]byte, 0, len(raw))
	var warnings []error
	for _, b := range raw {
		a, err := ma.NewMultiaddrBytes(b)
		if err != nil || len(a) < 2 {
			out = append(out, b) // NewACL reports it
			continue
		}
		code := a[0].Code()
		if code != ma.P_DNS && code != ma.P_DNS4 && code != ma.P_DNS6 {
			out = append(out, b)
			continue
		}
		network := map[int]string{ma.P_DNS: "ip", ma.P_DNS4: "ip4", ma.P_DNS6: "ip6"}[code]
		ips, err := net.DefaultResolver.LookupNetIP(ctx, network, a[0].Value())
		if err != nil {
			warnings = append(warnings, catalog.Errorf(catalog.CodeProtocol, "(ACL site address %s: %v)", a, err))
			continue
		}
		for _, ip := range ips {
			ip = ip.Unmap()
			proto := "/ip4/"
			if ip.Is6() {
				proto = "/ip6/"
			}
			head, err := ma.NewMultiaddr(proto + ip.String())
			if err != nil {
				continue
			}
			out = append(out, head.Encapsulate(a[1:]).Bytes())
		}
	}
	return out, warnings
}
