package jumpoint

import (
	"net/netip"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Refusal reasons, the values of the refusals counter's "reason" label.
// Each is one way a tunnel is refused; Authorize's doc says which rule.
const (
	ReasonBadTarget          = "bad_target"
	ReasonNoACL              = "no_acl"
	ReasonStranger           = "stranger"
	ReasonPeerTarget         = "peer_target"
	ReasonKeyInvalid         = "key_invalid"
	ReasonKeyOtherJumpoint   = "key_other_jumpoint"
	ReasonKeyTarget          = "key_target"
	ReasonGrantNotTechnician = "grant_not_technician"
	ReasonGrantInvalid       = "grant_invalid"
	ReasonGrantPeer          = "grant_peer"
	ReasonGrantTarget        = "grant_target"
	// Rule 4, agentless targets.
	ReasonGrantOtherJumpoint = "grant_other_jumpoint"
	ReasonTargetMismatch     = "target_mismatch"
	ReasonTargetNotAllowed   = "target_not_allowed"
)

// Reasons lists every refusal reason, so the counter shows each from the
// start at 0.
var Reasons = []string{ReasonBadTarget, ReasonNoACL, ReasonStranger, ReasonPeerTarget, ReasonKeyInvalid,
	ReasonKeyOtherJumpoint, ReasonKeyTarget, ReasonGrantNotTechnician, ReasonGrantInvalid, ReasonGrantPeer, ReasonGrantTarget,
	ReasonGrantOtherJumpoint, ReasonTargetMismatch, ReasonTargetNotAllowed}

// onlyMembers is the end of every permission_denied detail: what a
// refused party most needs to know.
const onlyMembers = "the jumpoint serves only its site's members: the peers installed to use it, hosts enrolling with an installer key that names it, and technicians with a grant for a peer behind it or for a target in its allow list"

// PeerAddrs are the TCP addresses (canonical host:port) that peer p
// listens on as the jumpoint knows them.
type PeerAddrs func(p peer.ID) []string

// Rules are what Authorize decides by: the jumpoint's identity, the
// current ACL and what its host knows of the peers behind it. A Rules is a
// value; the jumpoint makes one per tunnel from its current state.
type Rules struct {
	// Site is the site's (the coordinator's) peer ID: grants and
	// installer keys must be signed by it.
	Site peer.ID
	// Self is this jumpoint's peer ID: an installer key must name it.
	Self peer.ID
	// Coordinator are the coordinator's TCP addresses from the jumpoint's
	// enrollment (canonical host:port), which rule 2 allows before the
	// first ACL too.
	Coordinator []string
	// ACL is the coordinator's last answer; nil before the first.
	ACL *ACL
	// PeerAddrs says where a peer behind the jumpoint listens (rule 3).
	PeerAddrs PeerAddrs
	// Now is when the grants and keys are checked.
	Now time.Time
}

// Authorize decides whether remote may open a tunnel to open.target, by
// five rules:
//
//  1. A peer in the ACL (installed to use this jumpoint) may reach only
//     the site: the coordinator's and the live relays' TCP addresses.
//  2. Anyone else whose open carries an installer key that this site
//     signed, that is valid now and names this jumpoint may reach only the
//     coordinator: a host behind the jumpoint enrolling. It works before
//     the first ACL too.
//  3. A technician in the ACL whose open carries a grant signed by the
//     site, valid now, made out to that technician and for a peer in the
//     ACL may reach only that peer: the TCP addresses it listens on at
//     the IP address its own connection to the jumpoint comes from.
//  4. A technician in the ACL whose open carries a grant for an agentless
//     target (mesh/grant.VerifyTarget: signed by the site, valid now,
//     made out to that technician, naming this jumpoint and a target, no
//     peer) may reach that target only, and only while it is in the
//     ACL's allow list. A grant of either kind never passes for the other.
//  5. Everything else is refused with permission_denied.
//
// It returns the reason for the refusals counter and the catalog error
// the caller receives, or "", nil.
func (r Rules) Authorize(remote peer.ID, open *pb.TunnelOpen) (string, error) {
	target, ok := canonical(open.GetTarget())
	if !ok {
		return ReasonBadTarget, catalog.Errorf(catalog.CodeInvalidArgument,
			"(tunnel target %q: the jumpoint takes an IP address and a port)", open.GetTarget())
	}
	acl := r.ACL
	if acl != nil && acl.IsPeer(remote) {
		if _, ok := acl.SiteTargets[target]; ok {
			return "", nil
		}
		return ReasonPeerTarget, catalog.Errorf(catalog.CodePermissionDenied,
			"(a peer behind the jumpoint may reach only its site's coordinator and relays, not %s)", target)
	}
	switch {
	case open.GetGrant() != nil && acl != nil && isTargetGrant(open.GetGrant()):
		return r.agentless(remote, target, open.GetGrant())
	case open.GetGrant() != nil && acl != nil:
		return r.technician(remote, target, open.GetGrant())
	case open.GetInstallerKey() != "":
		return r.enrolling(target, open.GetInstallerKey())
	case acl == nil:
		return ReasonNoACL, catalog.Errorf(catalog.CodePermissionDenied,
			"(the jumpoint has no member list from the coordinator yet; until it has, it serves only hosts enrolling with an installer key)")
	}
	return ReasonStranger, catalog.Errorf(catalog.CodePermissionDenied, "(%s)", onlyMembers)
}

// enrolling is rule 2.
func (r Rules) enrolling(target, raw string) (string, error) {
	k, err := installerkey.Verify(raw, installerkey.VerifyOptions{Site: r.Site, Now: r.Now})
	if err != nil {
		// The key's own code (expired, other site, bad signature) says
		// what to fix.
		return ReasonKeyInvalid, err
	}
	if !slices.ContainsFunc(k.Jumpoints, func(j installerkey.JumpointRef) bool { return j.ID == r.Self }) && k.Jumpoint != r.Self {
		return ReasonKeyOtherJumpoint, catalog.Errorf(catalog.CodePermissionDenied,
			"(the installer key does not name this jumpoint; %s)", onlyMembers)
	}
	if slices.Contains(r.Coordinator, target) {
		return "", nil
	}
	if r.ACL != nil {
		if _, ok := r.ACL.CoordinatorTargets[target]; ok {
			return "", nil
		}
	}
	return ReasonKeyTarget, catalog.Errorf(catalog.CodePermissionDenied,
		"(a host enrolling through the jumpoint may reach only the coordinator, not %s)", target)
}

// technician is rule 3.
func (r Rules) technician(remote peer.ID, target string, g *pb.JumpGrant) (string, error) {
	if !r.ACL.IsTechnician(remote) {
		return ReasonGrantNotTechnician, catalog.Errorf(catalog.CodePermissionDenied,
			"(the caller is not a technician of the site, or no longer; %s)", onlyMembers)
	}
	body, err := grant.Parse(g)
	if err != nil {
		return ReasonGrantInvalid, err
	}
	p, err := peer.IDFromBytes(body.GetPeer())
	if err != nil {
		return ReasonGrantInvalid, catalog.Errorf(catalog.CodeGrantInvalid, "(the grant's peer: %v)", err)
	}
	if _, err := grant.Verify(g, grant.Check{Site: r.Site, Peer: p, Technician: remote, Now: r.Now}); err != nil {
		return ReasonGrantInvalid, err
	}
	if !r.ACL.IsPeer(p) {
		return ReasonGrantPeer, catalog.Errorf(catalog.CodePermissionDenied,
			"(the grant is for %s, which is not a peer behind this jumpoint)", p)
	}
	if r.PeerAddrs != nil && slices.Contains(r.PeerAddrs(p), target) {
		return "", nil
	}
	return ReasonGrantTarget, catalog.Errorf(catalog.CodePermissionDenied,
		"(%s is not an address the peer %s listens on as this jumpoint knows it; is the peer online?)", target, p)
}

// isTargetGrant reports whether g's body names a jumpoint or a target: a
// grant for an agentless target, checked by rule 4 (an unreadable body
// goes to rule 3, which refuses it).
func isTargetGrant(g *pb.JumpGrant) bool {
	body, err := grant.Parse(g)
	return err == nil && (len(body.GetJumpoint()) > 0 || body.GetTarget() != "")
}

// agentless is rule 4.
func (r Rules) agentless(remote peer.ID, target string, g *pb.JumpGrant) (string, error) {
	if !r.ACL.IsTechnician(remote) {
		return ReasonGrantNotTechnician, catalog.Errorf(catalog.CodePermissionDenied,
			"(the caller is not a technician of the site, or no longer; %s)", onlyMembers)
	}
	body, err := grant.VerifyTarget(g, grant.TargetCheck{Site: r.Site, Jumpoint: r.Self, Technician: remote, Now: r.Now})
	if err != nil {
		if b, perr := grant.Parse(g); perr == nil && len(b.GetJumpoint()) > 0 && peer.ID(b.GetJumpoint()) != r.Self {
			return ReasonGrantOtherJumpoint, err
		}
		return ReasonGrantInvalid, err
	}
	if granted, ok := canonical(body.GetTarget()); !ok || granted != target {
		return ReasonTargetMismatch, catalog.Errorf(catalog.CodePermissionDenied,
			"(the grant is for %s, not %s: ask the coordinator for a grant for this target)", body.GetTarget(), target)
	}
	if !r.ACL.Allow.Allows(netip.MustParseAddrPort(target)) {
		return ReasonTargetNotAllowed, catalog.Errorf(catalog.CodePermissionDenied,
			"(%s is outside jumpoint %s's allow list: %s)", target, r.ACL.Name, r.ACL.Allow)
	}
	return "", nil
}

// hostPeerAddrs are where a peer behind the jumpoint listens, as h knows
// it: the TCP addresses in h's peerstore (what the peer told h by
// identify over its connection) whose IP address is one that a live
// connection of the peer to h comes from. The IP condition keeps a
// compromised peer from pointing the technicians' tunnels at another
// host: it may announce any address, but it connects from its own.
func hostPeerAddrs(h host.Host) PeerAddrs {
	return func(p peer.ID) []string {
		var from []netip.Addr
		for _, c := range h.Network().ConnsToPeer(p) {
			if ip, ok := ipOf(c.RemoteMultiaddr()); ok {
				from = append(from, ip)
			}
		}
		if len(from) == 0 {
			return nil
		}
		var out []string
		for _, a := range h.Peerstore().Addrs(p) {
			t, ok := tcpTarget(a)
			if !ok {
				continue
			}
			if ip, _ := ipOf(a); slices.Contains(from, ip) {
				out = append(out, t)
			}
		}
		return out
	}
}

// ipOf is the IP address a multiaddr starts with.
func ipOf(a ma.Multiaddr) (netip.Addr, bool) {
	if len(a) == 0 || (a[0].Code() != ma.P_IP4 && a[0].Code() != ma.P_IP6) {
		return netip.Addr{}, false
	}
	if _, err := a.ValueForProtocol(ma.P_CIRCUIT); err == nil {
		return netip.Addr{}, false // relayed: the IP is the relay's
	}
	ip, ok := netip.AddrFromSlice(a[0].RawValue())
	return ip.Unmap(), ok
}
