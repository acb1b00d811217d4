package coordinator_test

import (
	"slices"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func TestInviteLoginAndRoles(t *testing.T) {
	h := newHarness(t)
	ctx := h.ctx()
	me := must[*pb.UserDetail](t)(h.admin.WhoAmI(ctx))
	if me.GetUser().GetName() != "admin" || me.GetUser().GetRole() != pb.Role_ROLE_ADMIN {
		t.Fatalf("whoami = %v", me)
	}
	if got := peerIDs(me.GetUser()); !slices.Contains(got, h.admin.ID().String()) {
		t.Fatalf("admin's keys %v do not include the console key %s", got, h.admin.ID())
	}

	alice := h.user("alice", pb.Role_ROLE_UNSPECIFIED)
	d := must[*pb.UserDetail](t)(alice.WhoAmI(ctx))
	if d.GetUser().GetRole() != pb.Role_ROLE_TECHNICIAN {
		t.Fatalf("new user role = %v, want technician", d.GetUser().GetRole())
	}
	// A technician is not an administrator.
	_, err := alice.InviteUser(ctx, "mallory", pb.Role_ROLE_ADMIN, time.Hour)
	wantCode(t, err, catalog.CodePermissionDenied)
	_, err = alice.Users(ctx)
	wantCode(t, err, catalog.CodePermissionDenied)
	_, err = alice.User(ctx, "admin")
	wantCode(t, err, catalog.CodePermissionDenied)

	// Promotion takes effect on the next request.
	must[*pb.UserDetail](t)(h.admin.SetRole(ctx, "alice", pb.Role_ROLE_ADMIN))
	users := must[[]*pb.User](t)(alice.Users(ctx))
	if len(users) != 2 {
		t.Fatalf("users = %d, want 2", len(users))
	}
	// Changing a role through invite is refused: role changes are explicit.
	_, err = h.admin.InviteUser(ctx, "alice", pb.Role_ROLE_TECHNICIAN, time.Hour)
	wantCode(t, err, catalog.CodeUserExists)
}

func TestInviteCodesAreOneTimeAndExpire(t *testing.T) {
	h := newHarness(t)
	ctx := h.ctx()
	inv := must[*pb.UserInviteResponse](t)(h.admin.InviteUser(ctx, "bob", pb.Role_ROLE_TECHNICIAN, 10*time.Minute))
	h.login("bob", inv.GetCode())
	_, _, err := h.tryLogin("bob-again", inv.GetCode())
	wantCode(t, err, catalog.CodeInviteInvalid)

	inv = must[*pb.UserInviteResponse](t)(h.admin.InviteUser(ctx, "carol", pb.Role_ROLE_TECHNICIAN, 10*time.Minute))
	h.clock.Advance(10 * time.Minute)
	_, _, err = h.tryLogin("carol", inv.GetCode())
	wantCode(t, err, catalog.CodeInviteExpired)

	_, _, err = h.tryLogin("nobody", "aaaa-bbbb-cccc-dddd-eeee-ffff")
	wantCode(t, err, catalog.CodeInviteInvalid)

	// Codes are read forgivingly: case and separators do not matter.
	inv = must[*pb.UserInviteResponse](t)(h.admin.InviteUser(ctx, "dave", pb.Role_ROLE_TECHNICIAN, time.Hour))
	h.login("dave", " "+upperNoDashes(inv.GetCode())+" ")

	_, err = h.admin.InviteUser(ctx, "erin", pb.Role_ROLE_TECHNICIAN, 31*24*time.Hour)
	wantCode(t, err, catalog.CodeOutOfRange)
	_, err = h.admin.InviteUser(ctx, "Bad Name", pb.Role_ROLE_TECHNICIAN, time.Hour)
	wantCode(t, err, catalog.CodeInvalidArgument)
}

func TestSecondDeviceForAUser(t *testing.T) {
	h := newHarness(t)
	ctx := h.ctx()
	laptop := h.user("frank", pb.Role_ROLE_TECHNICIAN)
	inv := must[*pb.UserInviteResponse](t)(h.admin.InviteUser(ctx, "frank", pb.Role_ROLE_UNSPECIFIED, time.Hour))
	desktop := h.login("frank-desktop", inv.GetCode())
	d := must[*pb.UserDetail](t)(desktop.WhoAmI(ctx))
	if len(d.GetUser().GetPeerIds()) != 2 {
		t.Fatalf("frank has %d keys, want 2", len(d.GetUser().GetPeerIds()))
	}
	must[*pb.UserDetail](t)(laptop.WhoAmI(ctx))
}

func TestRemovedTechnicianIsRefused(t *testing.T) {
	h := newHarness(t)
	ctx := h.ctx()
	gus := h.user("gus", pb.Role_ROLE_TECHNICIAN)
	must[*pb.Group](t)(h.admin.CreateGroup(ctx, "ops", "", []*pb.GroupMember{{User: "gus"}}))
	must[*pb.UserDetail](t)(gus.WhoAmI(ctx))
	if err := h.admin.RemoveUser(ctx, "gus"); err != nil {
		t.Fatal(err)
	}
	_, err := gus.WhoAmI(ctx)
	wantCode(t, err, catalog.CodeUnknownTechnician)
	g := must[*pb.Group](t)(h.admin.Group(ctx, "ops"))
	if len(g.GetMembers()) != 0 {
		t.Fatalf("removed user still in group: %v", g.GetMembers())
	}
	wantCode(t, h.admin.RemoveUser(ctx, "gus"), catalog.CodeUserNotFound)
}

func TestLastAdministratorIsKept(t *testing.T) {
	h := newHarness(t)
	ctx := h.ctx()
	wantCode(t, h.admin.RemoveUser(ctx, "admin"), catalog.CodeLastAdmin)
	_, err := h.admin.SetRole(ctx, "admin", pb.Role_ROLE_TECHNICIAN)
	wantCode(t, err, catalog.CodeLastAdmin)
	h.user("root2", pb.Role_ROLE_ADMIN)
	if err := h.admin.RemoveUser(ctx, "root2"); err != nil {
		t.Fatal(err)
	}
}

func peerIDs(u *pb.User) []string {
	var out []string
	for _, id := range u.GetPeerIds() {
		out = append(out, peerIDString(id))
	}
	return out
}

func TestRelayKeepsItsRole(t *testing.T) {
	h := newHarness(t)
	ctx := h.ctx()
	if _, err := h.admin.InviteUser(ctx, "relay-1", pb.Role_ROLE_RELAY, time.Hour); err != nil {
		t.Fatal(err)
	}
	_, err := h.admin.SetRole(ctx, "relay-1", pb.Role_ROLE_ADMIN)
	wantCode(t, err, catalog.CodeInvalidArgument)
}
