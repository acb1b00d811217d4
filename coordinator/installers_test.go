package coordinator_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func TestInstallerCarriesEveryField(t *testing.T) {
	h := newHarness(t)
	ctx := h.ctx()
	must[*pb.Group](t)(h.admin.CreateGroup(ctx, "servers", "", nil))
	w := must[*pb.Window](t)(coordinator.ParseWindow("daily 00:00-24:00"))
	must[*pb.JumpPolicy](t)(h.admin.PutJumpPolicy(ctx, &pb.JumpPolicy{Name: "always", TimeZone: "UTC", Windows: []*pb.Window{w}}, true))
	must[*pb.SessionPolicy](t)(h.admin.PutSessionPolicy(ctx, &pb.SessionPolicy{Name: "full", Shell: true}, true))
	must[*pb.SessionPolicy](t)(h.admin.PutSessionPolicy(ctx, &pb.SessionPolicy{Name: "ro", Exec: true}, true))
	over := installerkey.FieldTag | installerkey.FieldName
	in := must[*pb.Installer](t)(h.admin.CreateInstaller(ctx, &pb.InstallerCreateRequest{
		Defaults: &pb.InstallerDefaults{
			Group: "jumpgroup:servers", Tag: "linux", Comments: "rack 4", Name: strings.Repeat("n", 128),
			JumpPolicy: "always", SessionPolicyPresent: "full", SessionPolicyNotPresent: "ro",
			MaxOfflineMinutes: 60, ConnectionType: pb.ConnectionType_CONNECTION_TYPE_PASSIVE,
		},
		Overridable: uint32(over), ValidForSeconds: 7 * 24 * 3600,
	}))
	k, err := installerkey.Verify(in.GetKey(), installerkey.VerifyOptions{Site: h.coord.ID(), Now: h.clock.Now()})
	if err != nil {
		t.Fatalf("offline verification of a fresh key: %v", err)
	}
	d := k.Body.GetDefaults()
	if d.GetGroup() != "jumpgroup:servers" || d.GetTag() != "linux" || d.GetComments() != "rack 4" || len(d.GetName()) != 128 ||
		d.GetJumpPolicy() != "always" || d.GetSessionPolicyPresent() != "full" || d.GetSessionPolicyNotPresent() != "ro" ||
		d.GetMaxOfflineMinutes() != 60 || d.GetConnectionType() != pb.ConnectionType_CONNECTION_TYPE_PASSIVE {
		t.Fatalf("defaults in key = %v", d)
	}
	if !k.Overridable(installerkey.FieldTag) || k.Overridable(installerkey.FieldGroup) {
		t.Fatalf("overrides %v", installerkey.Field(k.Body.GetOverridable()).Names())
	}
	if len(k.SiteAddrs) == 0 {
		t.Fatal("key carries no site address")
	}
	if got := k.NotAfter().Sub(k.NotBefore()); got != 7*24*time.Hour {
		t.Fatalf("validity %s, want 7 days", got)
	}
	// Defaults left to the site: the creator's personal list, the site's connection type.
	in2 := must[*pb.Installer](t)(h.admin.CreateInstaller(ctx, &pb.InstallerCreateRequest{ValidForSeconds: 600, Defaults: &pb.InstallerDefaults{Ephemeral: true}}))
	if d := in2.GetBody().GetDefaults(); d.GetGroup() != "user:admin" || d.GetConnectionType() != pb.ConnectionType_CONNECTION_TYPE_ACTIVE || d.GetMaxOfflineMinutes() != 5 {
		t.Fatalf("site defaults not applied: %v", d)
	}
}

func TestInstallerValidation(t *testing.T) {
	h := newHarness(t)
	ctx := h.ctx()
	tech := h.user("tess", pb.Role_ROLE_TECHNICIAN)
	must[*pb.Group](t)(h.admin.CreateGroup(ctx, "others", "", nil))
	week := int64(7 * 24 * 3600)
	cases := []struct {
		name string
		by   func() error
		code catalog.Code
	}{
		{"valid for 9 minutes", create(h, &pb.InstallerDefaults{}, 9*60), catalog.CodeOutOfRange},
		{"valid for over a year", create(h, &pb.InstallerDefaults{}, 366*24*3600), catalog.CodeOutOfRange},
		{"name of 129 characters", create(h, &pb.InstallerDefaults{Name: strings.Repeat("x", 129)}, week), catalog.CodeInvalidArgument},
		{"unknown shared group", create(h, &pb.InstallerDefaults{Group: "jumpgroup:nope"}, week), catalog.CodeGroupNotFound},
		{"unknown personal list", create(h, &pb.InstallerDefaults{Group: "user:nobody"}, week), catalog.CodeUserNotFound},
		{"malformed group", create(h, &pb.InstallerDefaults{Group: "servers"}, week), catalog.CodeInvalidArgument},
		{"unknown jump policy", create(h, &pb.InstallerDefaults{JumpPolicy: "nope"}, week), catalog.CodePolicyNotFound},
		{"unknown session policy", create(h, &pb.InstallerDefaults{SessionPolicyPresent: "nope"}, week), catalog.CodePolicyNotFound},
		{"ephemeral with other offline limit", create(h, &pb.InstallerDefaults{Ephemeral: true, MaxOfflineMinutes: 60}, week), catalog.CodeInvalidArgument},
		{"offline limit below 5", create(h, &pb.InstallerDefaults{MaxOfflineMinutes: 4}, week), catalog.CodeOutOfRange},
		{"jumpoint in the old single field", func() error {
			_, err := h.admin.CreateInstaller(ctx, &pb.InstallerCreateRequest{ValidForSeconds: week, Jumpoint: "not-a-peer"})
			return err
		}, catalog.CodeInvalidArgument},
		{"unknown override bit", func() error {
			_, err := h.admin.CreateInstaller(ctx, &pb.InstallerCreateRequest{ValidForSeconds: week, Overridable: 1 << 30})
			return err
		}, catalog.CodeInvalidArgument},
		{"technician, someone else's list", func() error {
			_, err := tech.CreateInstaller(ctx, &pb.InstallerCreateRequest{ValidForSeconds: week, Defaults: &pb.InstallerDefaults{Group: "user:admin"}})
			return err
		}, catalog.CodePermissionDenied},
		{"technician, group not a member of", func() error {
			_, err := tech.CreateInstaller(ctx, &pb.InstallerCreateRequest{ValidForSeconds: week, Defaults: &pb.InstallerDefaults{Group: "jumpgroup:others"}})
			return err
		}, catalog.CodePermissionDenied},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantCode(t, c.by(), c.code) })
	}
	if n := len(must[[]*pb.Installer](t)(h.admin.Installers(ctx, true))); n != 0 {
		t.Fatalf("refused creates left %d installers behind", n)
	}
	// A technician may enroll into its own list, and sees only its installers.
	mine := must[*pb.Installer](t)(tech.CreateInstaller(ctx, &pb.InstallerCreateRequest{ValidForSeconds: week}))
	must[*pb.Installer](t)(h.admin.CreateInstaller(ctx, &pb.InstallerCreateRequest{ValidForSeconds: week}))
	if got := must[[]*pb.Installer](t)(tech.Installers(ctx, false)); len(got) != 1 || got[0].GetId() != mine.GetId() {
		t.Fatalf("technician sees %d installers", len(got))
	}
	if got := must[[]*pb.Installer](t)(h.admin.Installers(ctx, false)); len(got) != 2 {
		t.Fatalf("admin sees %d installers, want 2", len(got))
	}
}

func create(h *harness, d *pb.InstallerDefaults, validFor int64) func() error {
	return func() error {
		_, err := h.admin.CreateInstaller(h.ctx(), &pb.InstallerCreateRequest{Defaults: d, ValidForSeconds: validFor})
		return err
	}
}

func TestInstallerLifecycleAndCoordinatorChecks(t *testing.T) {
	h := newHarness(t)
	ctx := h.ctx()
	in := must[*pb.Installer](t)(h.admin.CreateInstaller(ctx, &pb.InstallerCreateRequest{ValidForSeconds: 3600}))
	must[*pb.Installer](t)(h.admin.CheckInstallerKey(ctx, in.GetKey()))
	oldKey := in.GetKey()

	// Extending re-signs with a later end; the new key outlives the old one.
	ext := must[*pb.Installer](t)(h.admin.ExtendInstaller(ctx, in.GetId(), 48*time.Hour))
	if ext.GetKey() == oldKey || ext.GetBody().GetNotAfterUnix() != h.clock.Now().Add(48*time.Hour).Unix() {
		t.Fatalf("extend did not move the end: %v", ext.GetBody())
	}
	h.clock.Advance(2 * time.Hour)
	_, err := h.admin.CheckInstallerKey(ctx, oldKey)
	wantCode(t, err, catalog.CodeKeyExpired)
	must[*pb.Installer](t)(h.admin.CheckInstallerKey(ctx, ext.GetKey()))
	_, err = h.admin.ExtendInstaller(ctx, in.GetId(), 5*time.Minute)
	wantCode(t, err, catalog.CodeOutOfRange)

	// Deleting revokes: offline the key still verifies, the coordinator refuses it.
	if err := h.admin.DeleteInstaller(ctx, in.GetId()); err != nil {
		t.Fatal(err)
	}
	if _, err := installerkey.Verify(ext.GetKey(), installerkey.VerifyOptions{Now: h.clock.Now()}); err != nil {
		t.Fatalf("offline: %v", err)
	}
	_, err = h.admin.CheckInstallerKey(ctx, ext.GetKey())
	wantCode(t, err, catalog.CodeKeyRevoked)
	_, err = h.admin.ExtendInstaller(ctx, in.GetId(), time.Hour)
	wantCode(t, err, catalog.CodeKeyRevoked)
	if got := must[[]*pb.Installer](t)(h.admin.Installers(ctx, false)); len(got) != 0 {
		t.Fatalf("deleted installer listed: %v", got)
	}
	if got := must[[]*pb.Installer](t)(h.admin.Installers(ctx, true)); len(got) != 1 || got[0].GetRevokedBy() != "admin" {
		t.Fatalf("--all: %v", got)
	}
	_, err = h.admin.Installer(ctx, "nope")
	wantCode(t, err, catalog.CodeInstallerNotFound)

	// A key signed by another site is refused as such; garbage as bad encoding.
	_, err = h.admin.CheckInstallerKey(ctx, otherSiteKey(t))
	wantCode(t, err, catalog.CodeKeyOtherSite)
	_, err = h.admin.CheckInstallerKey(ctx, "jmk1.garbage")
	wantCode(t, err, catalog.CodeKeyBadEncoding)
}

// otherSiteKey makes a valid installer key of a second, unrelated site.
func otherSiteKey(t *testing.T) string {
	dir := t.TempDir()
	key, err := mesh.CreateKeyFile(filepath.Join(dir, "k"))
	if err != nil {
		t.Fatal(err)
	}
	signer, _ := mesh.NewKeySigner(key)
	k, err := installerkey.Sign(&pb.InstallerKeyBody{InstallerId: "x", SiteId: []byte(signer.PeerID()),
		NotBeforeUnix: testStart.Unix(), NotAfterUnix: testStart.Add(time.Hour).Unix()}, signer)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestInstallersSurviveRestart(t *testing.T) {
	h := newHarness(t)
	ctx := h.ctx()
	in := must[*pb.Installer](t)(h.admin.CreateInstaller(ctx, &pb.InstallerCreateRequest{ValidForSeconds: 3600}))
	h.coord.Close()
	h.start()
	got := must[*pb.Installer](t)(h.admin.Installer(ctx, in.GetId()))
	if got.GetKey() != in.GetKey() {
		t.Fatal("installer changed across restart")
	}
}
