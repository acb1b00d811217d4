package coordinator_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Issue 11, finding 13: every administrative change is an audit event of
// kind admin, with who, the action, what, and before → after; a refused
// change is not one; `audit --kind admin` returns only these.
func TestAdministrativeChangesAreAudited(t *testing.T) {
	h := newHarness(t)
	ctx := h.ctx()
	tina := h.user("tina", pb.Role_ROLE_TECHNICIAN)
	must[*pb.UserDetail](t)(h.admin.SetRole(ctx, "tina", pb.Role_ROLE_ADMIN))
	must[*pb.UserDetail](t)(h.admin.SetRole(ctx, "tina", pb.Role_ROLE_TECHNICIAN))
	must[*pb.Group](t)(h.admin.CreateGroup(ctx, "servers", "Servers", nil))
	must[*pb.Group](t)(h.admin.AddMember(ctx, "servers", "tina", pb.MemberRole_MEMBER_ROLE_TEAM_LEAD))
	must[*pb.Group](t)(h.admin.RemoveMember(ctx, "servers", "tina"))
	p := &pb.SessionPolicy{Name: "attended", Shell: true}
	must[*pb.SessionPolicy](t)(h.admin.PutSessionPolicy(ctx, p, true))
	p.Exec = true
	must[*pb.SessionPolicy](t)(h.admin.PutSessionPolicy(ctx, p, false))
	w := must[*pb.Window](t)(coordinator.ParseWindow("mon-fri 09:00-17:00"))
	must[*pb.JumpPolicy](t)(h.admin.PutJumpPolicy(ctx, &pb.JumpPolicy{Name: "office", TimeZone: "UTC", Windows: []*pb.Window{w}}, true))
	must[*pb.Settings](t)(h.admin.SetSettings(ctx, map[string]string{"connection-rate": "100"}))
	// A technician's own installer is an administrative change too.
	in := must[*pb.Installer](t)(tina.CreateInstaller(ctx, &pb.InstallerCreateRequest{
		Defaults: &pb.InstallerDefaults{Group: "user:tina"}, ValidForSeconds: 3600}))
	must[*pb.Installer](t)(tina.ExtendInstaller(ctx, in.GetId(), 2*time.Hour))
	if err := tina.DeleteInstaller(ctx, in.GetId()); err != nil {
		t.Fatal(err)
	}
	for _, err := range []error{h.admin.DeleteJumpPolicy(ctx, "office"), h.admin.DeleteSessionPolicy(ctx, "attended"),
		h.admin.DeleteGroup(ctx, "servers"), h.admin.RemoveUser(ctx, "tina")} {
		if err != nil {
			t.Fatal(err)
		}
	}
	// Refused changes are not admin events.
	_, err := h.admin.SetSettings(ctx, map[string]string{"connection-rate": "1000"})
	wantCode(t, err, catalog.CodeOutOfRange)

	events := must[[]*pb.AuditEvent](t)(h.admin.Audit(ctx, &pb.AuditRequest{Kind: coordinator.AuditAdmin}))
	var got []string
	detail := map[string]string{}
	for _, e := range events {
		if e.GetKind() != coordinator.AuditAdmin {
			t.Fatalf("audit --kind admin returned a %s event", e.GetKind())
		}
		line := e.GetUser() + " " + e.GetAction() + " " + e.GetTarget()
		got = append(got, line)
		detail[line] = e.GetDetail()
	}
	want := []string{
		"admin user.invite tina", "admin user.role tina", "admin user.role tina",
		"admin group.create jumpgroup:servers", "admin group.add jumpgroup:servers", "admin group.remove jumpgroup:servers",
		"admin session-policy.create attended", "admin session-policy.update attended", "admin jump-policy.create office",
		"admin settings.set settings",
		"tina installer.create " + in.GetId(), "tina installer.extend " + in.GetId(), "tina installer.delete " + in.GetId(),
		"admin jump-policy.delete office", "admin session-policy.delete attended", "admin group.delete jumpgroup:servers",
		"admin user.remove tina",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("admin events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for line, part := range map[string]string{
		"admin session-policy.update attended": "{name:\"attended\" shell:true} → {name:\"attended\" shell:true exec:true}",
		"admin settings.set settings":          "connection_rate:50",
		"admin group.add jumpgroup:servers":    "member tina as team_lead",
		"tina installer.extend " + in.GetId():  "valid until: ",
	} {
		if !strings.Contains(detail[line], part) {
			t.Fatalf("%s: detail %q, want it to contain %q", line, detail[line], part)
		}
	}
	// The unfiltered log holds other kinds too (here, none yet besides
	// these); a filter on a kind with no events returns none.
	if grants := must[[]*pb.AuditEvent](t)(h.admin.Audit(ctx, &pb.AuditRequest{Kind: coordinator.AuditGrant})); len(grants) != 0 {
		t.Fatalf("%d grant events on a site without jumps", len(grants))
	}
}
