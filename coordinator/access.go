package coordinator

import (
	"slices"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// memberRole is user's role in g, or UNSPECIFIED when not a member.
func memberRole(g *pb.Group, user string) pb.MemberRole {
	for _, m := range g.GetMembers() {
		if m.GetUser() == user {
			return m.GetRole()
		}
	}
	return pb.MemberRole_MEMBER_ROLE_UNSPECIFIED
}

// groupsOf lists the codes of the groups user belongs to.
func groupsOf(groups []*pb.Group, user string) []string {
	var out []string
	for _, g := range groups {
		if memberRole(g, user) != pb.MemberRole_MEMBER_ROLE_UNSPECIFIED {
			out = append(out, g.GetCode())
		}
	}
	return out
}

// VisiblePersonalLists returns the users whose personal jump lists user may
// see: their own, plus, in every shared group, those ranked below them — a
// team lead sees the members' lists, a team manager the members' and team
// leads' (the seeds' "Jump Groups" rules). The result is sorted.
func VisiblePersonalLists(user string, groups []*pb.Group) []string {
	seen := map[string]bool{user: true}
	for _, g := range groups {
		mine := memberRole(g, user)
		if mine != pb.MemberRole_MEMBER_ROLE_TEAM_LEAD && mine != pb.MemberRole_MEMBER_ROLE_TEAM_MANAGER {
			continue
		}
		for _, m := range g.GetMembers() {
			if m.GetRole() < mine {
				seen[m.GetUser()] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for u := range seen {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

// CanUseGroup reports whether user may put peers into the jump group ref
// (their own personal list, or a shared group they belong to).
func CanUseGroup(user string, personal bool, name string, groups []*pb.Group) bool {
	if personal {
		return name == user
	}
	for _, g := range groups {
		if g.GetCode() == name {
			return memberRole(g, user) != pb.MemberRole_MEMBER_ROLE_UNSPECIFIED
		}
	}
	return false
}
