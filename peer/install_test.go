package peer_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

func TestInstallLayout(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	in := site.Installer(&pb.InstallerDefaults{Tag: "linux"}, uint32(installerkey.FieldName), week())
	h := install(t, site, in.GetKey(), peer.InstallOptions{Overrides: peer.Overrides{Name: "web-01"}, OverrideFields: installerkey.FieldName})
	want := map[string]os.FileMode{"jumpmesh": 0o755, "peer.key": 0o600, "config.json": 0o600, "var/state.json": 0o600,
		"init-script": 0o755, "uninstall": 0o755, "jumpmesh-peer.service": 0o644}
	for name, mode := range want {
		st, err := os.Stat(filepath.Join(h.dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
		} else if st.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, st.Mode().Perm(), mode)
		}
	}
	cfg, err := peer.LoadConfig(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Site != site.Coord.ID().String() || cfg.Overrides.Name != "web-01" || len(cfg.SiteAddrs) == 0 ||
		!cfg.FirstContactBy.Equal(time.Unix(in.GetBody().GetNotAfterUnix(), 0)) {
		t.Fatalf("config = %+v", cfg)
	}
	script, _ := os.ReadFile(filepath.Join(h.dir, "init-script"))
	for _, s := range []string{"start)", "stop)", "restart)", "status)", "peer run --dir", h.dir} {
		if !strings.Contains(string(script), s) {
			t.Errorf("init-script lacks %q", s)
		}
	}
	unit, _ := os.ReadFile(filepath.Join(h.dir, "jumpmesh-peer.service"))
	if !strings.Contains(string(unit), "ExecStart="+h.dir+"/jumpmesh peer run --dir "+h.dir) {
		t.Errorf("unit file:\n%s", unit)
	}
}

func TestInstallFailuresLeaveNothing(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	in := site.Installer(nil, uint32(installerkey.FieldTag), time.Hour)
	root, other := 0, 4242
	parent := t.TempDir()
	existing := filepath.Join(parent, "existing")
	if err := os.Mkdir(existing, 0o755); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		opts peer.InstallOptions
		code catalog.Code
	}{
		{"garbage key", peer.InstallOptions{Key: "nonsense"}, catalog.CodeKeyBadEncoding},
		{"tampered key", peer.InstallOptions{Key: in.GetKey()[:len(in.GetKey())-3] + "AAA"}, catalog.CodeKeyBadSignature},
		{"forbidden override", peer.InstallOptions{Overrides: peer.Overrides{Name: "x"}, OverrideFields: installerkey.FieldName}, catalog.CodeOverrideNotAllowed},
		{"forbidden public site address", peer.InstallOptions{PublicSiteAddress: "/ip4/127.0.0.1/tcp/1"}, catalog.CodeOverrideNotAllowed},
		{"existing directory", peer.InstallOptions{Dir: existing}, catalog.CodeInvalidArgument},
		{"missing parent", peer.InstallOptions{Dir: filepath.Join(parent, "no", "such")}, catalog.CodeInvalidArgument},
		{"root without --user", peer.InstallOptions{EUID: &root}, catalog.CodeInvalidArgument},
		{"unknown --user", peer.InstallOptions{User: "no-such-user-jm"}, catalog.CodeInvalidArgument},
		{"another user without root", peer.InstallOptions{User: "root", EUID: &other}, catalog.CodePermissionDenied},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			opts := c.opts
			if opts.Key == "" {
				opts.Key = in.GetKey()
			}
			if opts.Dir == "" {
				opts.Dir = filepath.Join(parent, "jm-"+strings.ReplaceAll(c.name, " ", "-"))
			}
			if opts.EUID == nil {
				uid := os.Geteuid() + 1000
				opts.EUID = &uid
			}
			opts.Binary, opts.Clock = os.Args[0], site.Clock
			_, err := peer.Install(opts)
			coordinatortest.WantCode(t, err, c.code)
			if c.opts.Dir == "" {
				if _, err := os.Stat(opts.Dir); !os.IsNotExist(err) {
					t.Fatalf("failed install left %s", opts.Dir)
				}
			}
		})
	}
	_, err := peer.Install(peer.InstallOptions{Key: in.GetKey(), Dir: filepath.Join(parent, "as-root"), EUID: &root, Binary: os.Args[0], Clock: site.Clock})
	if err == nil || !strings.Contains(err.Error(), peer.RootWarning) {
		t.Fatalf("installing as root without --user: %v, want the seeds' warning", err)
	}
	// An expired key fails offline, before anything is created.
	site.Clock.Advance(2 * time.Hour)
	dir := filepath.Join(parent, "late")
	uid := 1000
	_, err = peer.Install(peer.InstallOptions{Key: in.GetKey(), Dir: dir, Binary: os.Args[0], Clock: site.Clock, EUID: &uid})
	coordinatortest.WantCode(t, err, catalog.CodeKeyExpired)
	if entries, _ := os.ReadDir(parent); len(entries) != 1 {
		t.Fatalf("failed installs left %v", entries)
	}
}
