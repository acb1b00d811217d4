package coordinator

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/allowlist"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Agentless targets: hosts on a jumpoint's network that run no peer (the
// appliance's "Jump to" without a client). An administrator gives each
// jumpoint an allow list (IP prefixes and ports, mesh/allowlist) and the
// jump groups whose members may use it (`jumpmesh jumpoint set`); both
// live in the jumpoint's user record (User.jumpoint), so removing the
// jumpoint removes them.
//
// Who may reach an agentless target: administrators always; a technician
// only as a member (any role) of one of the jump groups the jumpoint's
// policy names. No groups named: administrators only. A group deleted
// later grants nothing (fail closed).
//
// A technician asks `jump` with via (the jumpoint) and target (IP:port).
// The coordinator checks the technician and the allow list and signs a
// grant naming the jumpoint's key and the target, without a peer: a peer
// refuses such a grant and the jumpoint refuses a peer grant for an
// agentless target (mesh/grant). The jumpoint checks the grant and the
// allow list again (its ACL carries the list), counts each tunnel's bytes
// and reports the finished tunnels at its next ACL refresh; each becomes
// an audit event of kind "tunnel".

// ActionJumpointSet is the admin audit action of jumpoint set.
const ActionJumpointSet = "jumpoint.set"

// AuditTunnel is the kind of the audit event of an agentless tunnel a
// jumpoint carried (technician, target, bytes, start and end).
const AuditTunnel = "tunnel"

// MaxJumpointGroups bounds the jump groups one jumpoint names.
const MaxJumpointGroups = 32

// MaxTunnelReports bounds the tunnel records one ACL refresh carries; the
// rest are dropped and the loss logged.
const MaxTunnelReports = 256

// jumpointSet changes a jumpoint's agentless policy (administrators).
func (s *Service) jumpointSet(c *caller, r *pb.JumpointSetRequest) (*pb.Response, error) {
	if err := c.requireAdmin(); err != nil {
		return nil, err
	}
	var allow []*pb.AllowRule
	if r.GetSetAllow() {
		var err error
		if allow, err = allowlist.ParseList(r.GetAllow()); err != nil {
			return nil, err
		}
	}
	groups := make([]string, 0, len(r.GetGroups()))
	for _, g := range r.GetGroups() {
		g = strings.TrimPrefix(g, "jumpgroup:")
		if !slices.Contains(groups, g) {
			groups = append(groups, g)
		}
	}
	if len(groups) > MaxJumpointGroups {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "A jumpoint names at most %d jump groups (got %d).", MaxJumpointGroups, len(groups))
	}
	var before, after *pb.JumpointPolicy
	err := s.update(func(tx *Tx) error {
		u, err := tx.User(r.GetName())
		if err != nil {
			return err
		}
		if u == nil || u.GetRole() != pb.Role_ROLE_JUMPOINT {
			return catalog.Errorf(catalog.CodeInvalidArgument, "No jumpoint %q at this site (see `jumpmesh jumpoint list`).", r.GetName())
		}
		before = proto.CloneOf(u.GetJumpoint())
		p := proto.CloneOf(u.GetJumpoint())
		if p == nil {
			p = &pb.JumpointPolicy{}
		}
		if r.GetSetAllow() {
			p.Allow = allow
		}
		if r.GetSetGroups() {
			for _, g := range groups {
				grp, err := tx.Group(g)
				if err != nil {
					return err
				}
				if grp == nil {
					return catalog.Errorf(catalog.CodeInvalidArgument, "No jump group %q (see `jumpmesh group list`).", g)
				}
			}
			p.Groups = groups
		}
		u.Jumpoint, after = p, p
		return tx.PutUser(u)
	})
	if err != nil {
		return nil, err
	}
	s.adminChanged(c, adminChange{Action: ActionJumpointSet, Target: r.GetName(), Change: changeText(
		[3]string{"allow", allowText(before), allowText(after)},
		[3]string{"groups", strings.Join(before.GetGroups(), ", "), strings.Join(after.GetGroups(), ", ")})})
	resp, err := s.jumpointList()
	if err != nil {
		return nil, err
	}
	list := resp.GetJumpoints()
	list.Jumpoints = slices.DeleteFunc(list.Jumpoints, func(v *pb.JumpointView) bool { return v.GetName() != r.GetName() })
	return resp, nil
}

func allowText(p *pb.JumpointPolicy) string {
	if len(p.GetAllow()) == 0 {
		return ""
	}
	return allowlist.FormatList(p.GetAllow())
}

// formatAllow is the policy's allow list as jumpoint set takes it.
func formatAllow(p *pb.JumpointPolicy) []string {
	out := make([]string, 0, len(p.GetAllow()))
	for _, r := range p.GetAllow() {
		out = append(out, allowlist.Format(r))
	}
	return out
}

// checkJumpTarget is checkJump for an agentless target: the jumpoint
// exists and reported where it listens, the technician may use it, the
// target is in its allow list. The grant names the jumpoint's key and the
// target, not a peer.
func (s *Service) checkJumpTarget(c *caller, r *pb.JumpRequest, now time.Time) (*pb.Response, *pb.AuditEvent, error) {
	ev := &pb.AuditEvent{Jumpoint: r.GetVia(), Target: r.GetTarget(), Detail: "via jumpoint " + r.GetVia()}
	switch {
	case r.GetRef() != "":
		return nil, ev, catalog.Errorf(catalog.CodeInvalidArgument, "A jump names a peer, or with --via a jumpoint and a target, not both.")
	case r.GetVia() == "" || r.GetTarget() == "":
		return nil, ev, catalog.Errorf(catalog.CodeInvalidArgument, "A jump to an agentless target names the jumpoint (--via) and the target's IP:port.")
	}
	target, err := allowlist.ParseTarget(r.GetTarget())
	if err != nil {
		return nil, ev, err
	}
	ev.Target = target.String()
	var ref *pb.JumpointRef
	err = s.view(func(tx *Tx) error {
		u, _, err := jumpointUser(tx, r.GetVia())
		if err != nil {
			return err
		}
		ev.Jumpoint, ev.Detail = u.GetName(), "via jumpoint "+u.GetName()
		if err := s.mayUseJumpoint(tx, c, u); err != nil {
			return err
		}
		if err := checkAllowed(u, target); err != nil {
			return err
		}
		refs, err := s.resolveJumpoints(tx, []string{u.GetName()})
		if catalog.HasCode(err, catalog.CodeInvalidArgument) {
			return catalog.Errorf(catalog.CodeJumpointUnreachable,
				"(jumpoint %s has not reported where it listens since the coordinator started; is `jumpmesh jumpoint run` running? It reports every %s)",
				u.GetName(), JumpointRefresh)
		}
		if err != nil {
			return err
		}
		ref = s.freshestJumpoint(refs)
		return nil
	})
	if err != nil {
		return nil, ev, err
	}
	body := &pb.JumpGrantBody{SiteId: []byte(s.siteID), Technician: []byte(c.peer), Jumpoint: ref.GetId(), Target: target.String(),
		Capabilities: grant.Forward, IssuedUnix: now.Unix(), ExpiresUnix: now.Add(GrantLifetime).Unix(), User: c.name()}
	g, err := grant.Sign(body, s.signer)
	if err != nil {
		return nil, ev, catalog.Internalf("(signing the grant: %w)", err)
	}
	signed, err := grant.Parse(g)
	if err != nil {
		return nil, ev, catalog.Internalf("(reading the grant just signed: %w)", err)
	}
	ev.SessionId = fmt.Sprintf("%x", signed.GetNonce())
	return &pb.Response{Body: &pb.Response_Jump{Jump: &pb.JumpResponse{Grant: g, Relays: encodeAddrs(s.relayAddrs()),
		Jumpoints: []*pb.JumpointRef{ref}}}}, ev, nil
}

// mayUseJumpoint applies the rule above: administrators, or members of
// one of the jumpoint's jump groups.
func (s *Service) mayUseJumpoint(tx *Tx, c *caller, j *pb.User) error {
	if c.isAdmin() {
		return nil
	}
	groups := j.GetJumpoint().GetGroups()
	for _, code := range groups {
		g, err := tx.Group(code)
		if err != nil {
			return err
		}
		if memberRole(g, c.name()) != pb.MemberRole_MEMBER_ROLE_UNSPECIFIED {
			return nil
		}
	}
	if len(groups) == 0 {
		return catalog.Errorf(catalog.CodePermissionDenied,
			"(jumpoint %s's agentless targets are for administrators only: no jump group may use them; an administrator adds one with `jumpmesh jumpoint set %s --group CODE`)",
			j.GetName(), j.GetName())
	}
	return catalog.Errorf(catalog.CodePermissionDenied,
		"(jumpoint %s's agentless targets are for administrators and members of the jump groups %s; %s is in none of them)",
		j.GetName(), strings.Join(groups, ", "), c.name())
}

// checkAllowed refuses a target outside the jumpoint's allow list, naming
// the list.
func checkAllowed(j *pb.User, target netip.AddrPort) error {
	l, err := allowlist.Compile(j.GetJumpoint().GetAllow())
	if err != nil {
		return catalog.Internalf("(jumpoint %s's stored allow list: %w)", j.GetName(), err)
	}
	if !l.Allows(target) {
		return catalog.Errorf(catalog.CodePermissionDenied, "(%s is outside jumpoint %s's allow list: %s)", target, j.GetName(), l)
	}
	return nil
}

// freshestJumpoint is the key of a jumpoint to name in a grant: the one
// that refreshed last (refs all reported once).
func (s *Service) freshestJumpoint(refs []*pb.JumpointRef) *pb.JumpointRef {
	best, at := refs[0], time.Time{}
	for _, r := range refs {
		if seen, ok := s.jumpointBook.get(peer.ID(r.GetId())); ok && seen.at.After(at) {
			best, at = r, seen.at
		}
	}
	return best
}

func cut(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
