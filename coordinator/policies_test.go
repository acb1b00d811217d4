package coordinator_test

import (
	"testing"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func TestJumpPolicies(t *testing.T) {
	h := newHarness(t)
	ctx := h.ctx()
	w := must[*pb.Window](t)(coordinator.ParseWindow("mon-fri 09:00-17:00"))
	p := &pb.JumpPolicy{Name: "office-hours", TimeZone: "Europe/Paris", Windows: []*pb.Window{w}}
	must[*pb.JumpPolicy](t)(h.admin.PutJumpPolicy(ctx, p, true))
	_, err := h.admin.PutJumpPolicy(ctx, p, true)
	wantCode(t, err, catalog.CodePolicyExists)
	_, err = h.admin.PutJumpPolicy(ctx, &pb.JumpPolicy{Name: "other", TimeZone: "Europe/Paris", Windows: []*pb.Window{w}}, false)
	wantCode(t, err, catalog.CodePolicyNotFound)
	_, err = h.admin.PutJumpPolicy(ctx, &pb.JumpPolicy{Name: "bad-tz", TimeZone: "Mars/Olympus", Windows: []*pb.Window{w}}, true)
	wantCode(t, err, catalog.CodeInvalidArgument)
	_, err = h.admin.PutJumpPolicy(ctx, &pb.JumpPolicy{Name: "no-windows", TimeZone: "UTC"}, true)
	if catalog.CodeOf(err) == "" {
		t.Fatal("a jump policy without windows was accepted")
	}

	p.TimeZone = "America/New_York"
	must[*pb.JumpPolicy](t)(h.admin.PutJumpPolicy(ctx, p, false))
	got := must[*pb.JumpPolicy](t)(h.admin.JumpPolicy(ctx, "office-hours"))
	if got.GetTimeZone() != "America/New_York" {
		t.Fatalf("update lost: %v", got)
	}
	if n := len(must[[]*pb.JumpPolicy](t)(h.admin.JumpPolicies(ctx))); n != 1 {
		t.Fatalf("%d jump policies, want 1", n)
	}
	tech := h.user("tina", pb.Role_ROLE_TECHNICIAN)
	must[[]*pb.JumpPolicy](t)(tech.JumpPolicies(ctx))
	_, err = tech.PutJumpPolicy(ctx, p, false)
	wantCode(t, err, catalog.CodePermissionDenied)

	// A policy an installer uses cannot be deleted until the installer is.
	in := must[*pb.Installer](t)(h.admin.CreateInstaller(ctx, &pb.InstallerCreateRequest{
		Defaults: &pb.InstallerDefaults{JumpPolicy: "office-hours"}, ValidForSeconds: 3600}))
	wantCode(t, h.admin.DeleteJumpPolicy(ctx, "office-hours"), catalog.CodeInUse)
	if err := h.admin.DeleteInstaller(ctx, in.GetId()); err != nil {
		t.Fatal(err)
	}
	if err := h.admin.DeleteJumpPolicy(ctx, "office-hours"); err != nil {
		t.Fatal(err)
	}
	_, err = h.admin.JumpPolicy(ctx, "office-hours")
	wantCode(t, err, catalog.CodePolicyNotFound)
}

func TestSessionPolicies(t *testing.T) {
	h := newHarness(t)
	ctx := h.ctx()
	p := &pb.SessionPolicy{Name: "unattended", Shell: true, Exec: true}
	must[*pb.SessionPolicy](t)(h.admin.PutSessionPolicy(ctx, p, true))
	_, err := h.admin.PutSessionPolicy(ctx, &pb.SessionPolicy{Name: "UPPER"}, true)
	wantCode(t, err, catalog.CodeInvalidArgument)
	p.RequireConsent = true
	must[*pb.SessionPolicy](t)(h.admin.PutSessionPolicy(ctx, p, false))
	if !must[*pb.SessionPolicy](t)(h.admin.SessionPolicy(ctx, "unattended")).GetRequireConsent() {
		t.Fatal("update lost")
	}
	in := must[*pb.Installer](t)(h.admin.CreateInstaller(ctx, &pb.InstallerCreateRequest{
		Defaults: &pb.InstallerDefaults{SessionPolicyNotPresent: "unattended"}, ValidForSeconds: 3600}))
	wantCode(t, h.admin.DeleteSessionPolicy(ctx, "unattended"), catalog.CodeInUse)
	// An expired installer no longer holds the policy.
	h.clock.Advance(2 * 3600e9)
	if err := h.admin.DeleteSessionPolicy(ctx, "unattended"); err != nil {
		t.Fatalf("policy of expired installer %s: %v", in.GetId(), err)
	}
	wantCode(t, h.admin.DeleteSessionPolicy(ctx, "unattended"), catalog.CodePolicyNotFound)
}

func TestSettingsOverTheWire(t *testing.T) {
	h := newHarness(t)
	ctx := h.ctx()
	st := must[*pb.Settings](t)(h.admin.Settings(ctx))
	if st.GetDeleteAfterDays() != 180 || st.GetConnectionRate() != 50 || st.GetPassivePort() != 5832 || st.GetMaxSessionStarts() != 20 {
		t.Fatalf("defaults = %v", st)
	}
	st = must[*pb.Settings](t)(h.admin.SetSettings(ctx, map[string]string{"lost-after-days": "20", "connection-rate": "300"}))
	if st.GetLostAfterDays() != 20 || st.GetConnectionRate() != 300 {
		t.Fatalf("after set: %v", st)
	}
	// All or nothing: one bad value keeps every value as it was.
	_, err := h.admin.SetSettings(ctx, map[string]string{"connection-rate": "10", "passive-port": "70000"})
	wantCode(t, err, catalog.CodeOutOfRange)
	_, err = h.admin.SetSettings(ctx, map[string]string{"lost-after-days": "200"})
	if err == nil {
		t.Fatal("lost-after-days ≥ delete-after-days was accepted")
	}
	if got := must[*pb.Settings](t)(h.admin.Settings(ctx)); got.GetConnectionRate() != 300 || got.GetLostAfterDays() != 20 {
		t.Fatalf("a refused set changed settings: %v", got)
	}
	tech := h.user("tom", pb.Role_ROLE_TECHNICIAN)
	must[*pb.Settings](t)(tech.Settings(ctx))
	_, err = tech.SetSettings(ctx, map[string]string{"connection-rate": "10"})
	wantCode(t, err, catalog.CodePermissionDenied)
	_, err = h.admin.SetSettings(ctx, nil)
	wantCode(t, err, catalog.CodeInvalidArgument)

	// Settings survive a restart of the coordinator.
	h.coord.Close()
	h.start()
	if got := must[*pb.Settings](t)(h.admin.Settings(ctx)); got.GetConnectionRate() != 300 {
		t.Fatalf("after restart: %v", got)
	}
}
