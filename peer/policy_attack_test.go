package peer_test

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

// policySite is issue 11's loopback site: web-01 in jumpgroup:servers under
// an exec-only session policy and an always-open jump policy, alice a
// technician in that group.
func policySite(t *testing.T) (*coordinatortest.Site[*console.Client], *host, *console.Client) {
	t.Helper()
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	alice := site.User("alice", pb.Role_ROLE_TECHNICIAN)
	if _, err := site.Admin.CreateGroup(ctx, "servers", "Servers", []*pb.GroupMember{{User: "alice"}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []*pb.SessionPolicy{{Name: "exec-only", Exec: true}, {Name: "allowall", Shell: true, Exec: true, Forward: true, FileTransfer: true}} {
		if _, err := site.Admin.PutSessionPolicy(ctx, p, true); err != nil {
			t.Fatal(err)
		}
	}
	w, _ := coordinator.ParseWindow("daily 00:00-24:00")
	if _, err := site.Admin.PutJumpPolicy(ctx, &pb.JumpPolicy{Name: "always", TimeZone: "UTC", Windows: []*pb.Window{w}}, true); err != nil {
		t.Fatal(err)
	}
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "web-01", Group: "jumpgroup:servers", JumpPolicy: "always",
		SessionPolicyPresent: "exec-only", SessionPolicyNotPresent: "exec-only"})
	return site, h, alice
}

// adminEvents is the audit log's admin events.
func adminEvents(t *testing.T, site *coordinatortest.Site[*console.Client]) []*pb.AuditEvent {
	t.Helper()
	events, err := site.Admin.Audit(site.Ctx(), &pb.AuditRequest{Kind: coordinator.AuditAdmin})
	if err != nil {
		t.Fatal(err)
	}
	return events
}

// Issue 11, finding 1: alice, refused a shell on web-01 under an exec-only
// policy, runs `jumpmesh set web-01 --session-policy-present allowall
// --session-policy-not-present allowall --jump-policy ""`. She is refused,
// the peer keeps its policies, her shell is still refused, and what she may
// change (tag, comments, name) she still can, audited with before → after.
func TestTechnicianCannotStripPeerPolicies(t *testing.T) {
	site, _, alice := policySite(t)
	ctx := site.Ctx()
	refusedAt(t, site, alice, "web-01", grant.Shell, catalog.CodePermissionDenied)
	before, err := site.Admin.Peer(ctx, "web-01")
	if err != nil {
		t.Fatal(err)
	}

	strip := &pb.InstallerDefaults{SessionPolicyPresent: "allowall", SessionPolicyNotPresent: "allowall", JumpPolicy: ""}
	all := uint32(installerkey.FieldSessionPolicyPresent | installerkey.FieldSessionPolicyNotPresent | installerkey.FieldJumpPolicy)
	_, err = alice.SetPeer(ctx, "web-01", strip, all)
	coordinatortest.WantCode(t, err, catalog.CodePermissionDenied)
	// Each policy field alone, and mixed with a field she may set.
	for _, f := range []installerkey.Field{installerkey.FieldSessionPolicyPresent, installerkey.FieldSessionPolicyNotPresent, installerkey.FieldJumpPolicy} {
		_, err = alice.SetPeer(ctx, "web-01", &pb.InstallerDefaults{Tag: "x", SessionPolicyPresent: "allowall", SessionPolicyNotPresent: "allowall"}, uint32(f|installerkey.FieldTag))
		coordinatortest.WantCode(t, err, catalog.CodePermissionDenied)
	}
	after, err := site.Admin.Peer(ctx, "web-01")
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(before.GetPeer().GetSettings(), after.GetPeer().GetSettings()) {
		t.Fatalf("a refused set changed the peer: %v → %v", before.GetPeer().GetSettings(), after.GetPeer().GetSettings())
	}
	refusedAt(t, site, alice, "web-01", grant.Shell, catalog.CodePermissionDenied)
	refusedAt(t, site, alice, "web-01", grant.FileTransfer, catalog.CodePermissionDenied)
	if out, _, st := run(t, alice, "web-01", "echo", "exec still allowed"); st.GetCode() != 0 || out != "exec still allowed\n" {
		t.Fatalf("exec under exec-only: %q %v", out, st)
	}

	// What a technician may change, she still can; it is audited.
	if _, err := alice.SetPeer(ctx, "web-01", &pb.InstallerDefaults{Tag: "rack-4", Comments: "checked"},
		uint32(installerkey.FieldTag|installerkey.FieldComments)); err != nil {
		t.Fatalf("technician setting tag and comments: %v", err)
	}
	// An administrator may change the policies; also audited.
	if _, err := site.Admin.SetPeer(ctx, "web-01", &pb.InstallerDefaults{SessionPolicyPresent: "allowall"},
		uint32(installerkey.FieldSessionPolicyPresent)); err != nil {
		t.Fatalf("administrator setting a policy: %v", err)
	}
	var sets []string
	for _, e := range adminEvents(t, site) {
		if e.GetAction() == coordinator.ActionPeerSet {
			sets = append(sets, e.GetUser()+": "+e.GetDetail())
			if e.GetPeerName() != "web-01" || e.GetTarget() != "web-01" || len(e.GetPeer()) == 0 {
				t.Fatalf("peer set event does not name the peer: %v", e)
			}
		}
	}
	want := []string{`alice: tag: (none) → "rack-4"; comments: (none) → "checked"`,
		`admin: session-policy-present: "exec-only" → "allowall"`}
	if strings.Join(sets, "\n") != strings.Join(want, "\n") {
		t.Fatalf("peer set events:\n%s\nwant:\n%s", strings.Join(sets, "\n"), strings.Join(want, "\n"))
	}
}

// Issue 11, finding 2: a policy any enrolled peer uses cannot be deleted,
// even once no installer names it; the refusal says how many peers and
// installers, and which.
func TestPolicyUsedByAPeerIsNotDeleted(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	if _, err := site.Admin.PutSessionPolicy(ctx, &pb.SessionPolicy{Name: "exec-only", Exec: true}, true); err != nil {
		t.Fatal(err)
	}
	w, _ := coordinator.ParseWindow("daily 00:00-24:00")
	if _, err := site.Admin.PutJumpPolicy(ctx, &pb.JumpPolicy{Name: "always", TimeZone: "UTC", Windows: []*pb.Window{w}}, true); err != nil {
		t.Fatal(err)
	}
	in := site.Installer(&pb.InstallerDefaults{Name: "web-01", JumpPolicy: "always", SessionPolicyNotPresent: "exec-only"}, 0, week())
	h := install(t, site, in.GetKey(), peer.InstallOptions{})
	h.start()
	h.waitStatus(h.id(), "online")

	err := site.Admin.DeleteSessionPolicy(ctx, "exec-only")
	coordinatortest.WantCode(t, err, catalog.CodeInUse)
	if d := err.Error(); !strings.Contains(d, "1 peer(s): web-01") || !strings.Contains(d, "1 live installer(s): "+in.GetId()) {
		t.Fatalf("in_use does not say who uses it: %v", err)
	}
	if err := site.Admin.DeleteInstaller(ctx, in.GetId()); err != nil {
		t.Fatal(err)
	}
	err = site.Admin.DeleteSessionPolicy(ctx, "exec-only")
	coordinatortest.WantCode(t, err, catalog.CodeInUse)
	if d := err.Error(); !strings.Contains(d, "1 peer(s): web-01") || !strings.Contains(d, "0 live installer(s)") {
		t.Fatalf("in_use does not say who uses it: %v", err)
	}
	coordinatortest.WantCode(t, site.Admin.DeleteJumpPolicy(ctx, "always"), catalog.CodeInUse)
	if _, err := site.Admin.SessionPolicy(ctx, "exec-only"); err != nil {
		t.Fatalf("a refused delete lost the policy: %v", err)
	}
	if _, err := site.Admin.Jump(ctx, "web-01", grant.Exec); err != nil {
		t.Fatalf("jump under the kept policies: %v", err)
	}

	// Once the peer names other policies, they go.
	if _, err := site.Admin.SetPeer(ctx, "web-01", &pb.InstallerDefaults{},
		uint32(installerkey.FieldSessionPolicyNotPresent|installerkey.FieldJumpPolicy)); err != nil {
		t.Fatal(err)
	}
	if err := site.Admin.DeleteSessionPolicy(ctx, "exec-only"); err != nil {
		t.Fatalf("unused policy: %v", err)
	}
	if err := site.Admin.DeleteJumpPolicy(ctx, "always"); err != nil {
		t.Fatalf("unused policy: %v", err)
	}
}
