package coordinator_test

import (
	"slices"
	"testing"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func TestJumpGroups(t *testing.T) {
	h := newHarness(t)
	ctx := h.ctx()
	ann := h.user("ann", pb.Role_ROLE_TECHNICIAN)
	h.user("ben", pb.Role_ROLE_TECHNICIAN)
	lead := h.user("lea", pb.Role_ROLE_TECHNICIAN)
	h.user("max", pb.Role_ROLE_TECHNICIAN)

	g := must[*pb.Group](t)(h.admin.CreateGroup(ctx, "server_support", "Server Support", []*pb.GroupMember{
		{User: "ann"}, {User: "lea", Role: pb.MemberRole_MEMBER_ROLE_TEAM_LEAD},
	}))
	if len(g.GetMembers()) != 2 || g.GetMembers()[0].GetRole() != pb.MemberRole_MEMBER_ROLE_MEMBER {
		t.Fatalf("members = %v", g.GetMembers())
	}
	_, err := h.admin.CreateGroup(ctx, "server_support", "", nil)
	wantCode(t, err, catalog.CodeGroupExists)
	_, err = h.admin.CreateGroup(ctx, "Bad Code", "", nil)
	wantCode(t, err, catalog.CodeInvalidArgument)
	_, err = h.admin.CreateGroup(ctx, "ghosts", "", []*pb.GroupMember{{User: "casper"}})
	wantCode(t, err, catalog.CodeUserNotFound)
	_, err = ann.CreateGroup(ctx, "mine", "", nil)
	wantCode(t, err, catalog.CodePermissionDenied)

	must[*pb.Group](t)(h.admin.AddMember(ctx, "server_support", "ben", pb.MemberRole_MEMBER_ROLE_MEMBER))
	must[*pb.Group](t)(h.admin.AddMember(ctx, "server_support", "max", pb.MemberRole_MEMBER_ROLE_TEAM_MANAGER))

	// Team leads see members' personal lists; managers see members' and leads'.
	wantVisible(t, must[*pb.UserDetail](t)(lead.WhoAmI(ctx)), "ann", "ben", "lea")
	wantVisible(t, must[*pb.UserDetail](t)(h.admin.User(ctx, "max")), "ann", "ben", "lea", "max")
	wantVisible(t, must[*pb.UserDetail](t)(ann.WhoAmI(ctx)), "ann")

	// Members see their groups, others do not.
	if gs := must[[]*pb.Group](t)(ann.Groups(ctx)); len(gs) != 1 {
		t.Fatalf("ann sees %d groups, want 1", len(gs))
	}
	h.user("zoe", pb.Role_ROLE_TECHNICIAN)
	zoe := h.login("zoe2", must[*pb.UserInviteResponse](t)(h.admin.InviteUser(ctx, "zoe", 0, 3600e9)).GetCode())
	_, err = zoe.Group(ctx, "server_support")
	wantCode(t, err, catalog.CodePermissionDenied)

	// Role change of an existing member, then removal.
	g = must[*pb.Group](t)(h.admin.AddMember(ctx, "server_support", "ann", pb.MemberRole_MEMBER_ROLE_TEAM_LEAD))
	if len(g.GetMembers()) != 4 {
		t.Fatalf("re-adding changed the member count: %v", g.GetMembers())
	}
	must[*pb.Group](t)(h.admin.RemoveMember(ctx, "server_support", "ben"))
	_, err = h.admin.RemoveMember(ctx, "server_support", "ben")
	wantCode(t, err, catalog.CodeMemberNotFound)
	_, err = h.admin.AddMember(ctx, "nope", "ann", 0)
	wantCode(t, err, catalog.CodeGroupNotFound)

	if err := h.admin.DeleteGroup(ctx, "server_support"); err != nil {
		t.Fatal(err)
	}
	wantCode(t, h.admin.DeleteGroup(ctx, "server_support"), catalog.CodeGroupNotFound)
}

func wantVisible(t *testing.T, d *pb.UserDetail, want ...string) {
	t.Helper()
	if got := d.GetVisiblePersonalLists(); !slices.Equal(got, want) {
		t.Fatalf("%s sees personal lists %v, want %v", d.GetUser().GetName(), got, want)
	}
}

func TestVisiblePersonalListsAcrossGroups(t *testing.T) {
	groups := []*pb.Group{
		{Code: "a", Members: []*pb.GroupMember{{User: "x", Role: pb.MemberRole_MEMBER_ROLE_TEAM_LEAD}, {User: "y", Role: pb.MemberRole_MEMBER_ROLE_MEMBER}, {User: "z", Role: pb.MemberRole_MEMBER_ROLE_TEAM_LEAD}}},
		{Code: "b", Members: []*pb.GroupMember{{User: "x", Role: pb.MemberRole_MEMBER_ROLE_MEMBER}, {User: "w", Role: pb.MemberRole_MEMBER_ROLE_MEMBER}}},
	}
	// A lead does not see another lead's list, nor lists in groups where it is a member.
	if got := coordinator.VisiblePersonalLists("x", groups); !slices.Equal(got, []string{"x", "y"}) {
		t.Fatalf("got %v", got)
	}
}
