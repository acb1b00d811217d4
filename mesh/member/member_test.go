package member_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/member"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// relayFiles are a member directory under the relay's names.
func relayFiles(dir string) member.Files {
	return member.Files{Dir: dir, Key: "relay.key", Config: "relay.json"}
}

// loginRelay logs a relay user in from a directory of its own, as a relay
// enrolls; the client is closed at the end of the test.
func loginRelay(t *testing.T, site *coordinatortest.Site[*member.Client]) (*member.Client, member.Files) {
	t.Helper()
	f := relayFiles(filepath.Join(t.TempDir(), "relay-1"))
	c, _, err := member.Login(site.Ctx(), f, site.Addr, site.Invite("relay-1", pb.Role_ROLE_RELAY), mesh.HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c, f
}

// TestLoginThenOpen: a failed login keeps only the key; a good one records
// site, coordinator, user and role; Open finds the site from the files
// alone and calls it with the same identity.
func TestLoginThenOpen(t *testing.T) {
	site := coordinatortest.New(t, coordinatortest.MemberLogin)
	f := relayFiles(filepath.Join(t.TempDir(), "relay-1"))

	_, _, err := member.Login(site.Ctx(), f, site.Addr, "wrong-code", mesh.HostConfig{})
	coordinatortest.WantCode(t, err, catalog.CodeInviteInvalid)
	if _, err := os.Stat(f.ConfigPath()); !os.IsNotExist(err) {
		t.Fatalf("a failed login wrote %s: %v", f.Config, err)
	}
	keyBefore, err := os.ReadFile(f.KeyPath())
	if err != nil {
		t.Fatal(err)
	}

	c, resp, err := member.Login(site.Ctx(), f, site.Addr, site.Invite("relay-1", pb.Role_ROLE_RELAY), mesh.HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	id := c.ID()
	if resp.GetUser().GetName() != "relay-1" || c.UserName() != "relay-1" || c.Role() != "relay" || c.Site() != site.Coord.ID() {
		t.Fatalf("login: response %v, user %q, role %q, site %s", resp, c.UserName(), c.Role(), c.Site())
	}
	c.Close()
	for path, want := range map[string]os.FileMode{f.Dir: 0o700, f.KeyPath(): 0o600, f.ConfigPath(): 0o600} {
		if st, err := os.Stat(path); err != nil || st.Mode().Perm() != want {
			t.Fatalf("%s: %v, want mode %v", path, err, want)
		}
	}
	if keyAfter, _ := os.ReadFile(f.KeyPath()); string(keyAfter) != string(keyBefore) {
		t.Fatal("login replaced the existing key")
	}
	var cfg member.Config
	raw, _ := os.ReadFile(f.ConfigPath())
	if err := json.Unmarshal(raw, &cfg); err != nil || cfg.Site != site.Coord.ID().String() || cfg.User != "relay-1" ||
		cfg.Role != "relay" || len(cfg.Coordinator) == 0 || cfg.Coordinator[0] != site.Addr {
		t.Fatalf("config file %s: %+v, %v", raw, cfg, err)
	}

	c, err = member.Open(f, mesh.HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.ID() != id || c.CoordinatorAddr() != site.Addr {
		t.Fatalf("reopened as %s at %q, want %s at %q", c.ID(), c.CoordinatorAddr(), id, site.Addr)
	}
	r, err := c.Call(site.Ctx(), &pb.Request{Body: &pb.Request_Whoami{Whoami: &pb.Empty{}}})
	if err != nil || r.GetUser().GetUser().GetName() != "relay-1" {
		t.Fatalf("whoami after reopen: %v, %v", r, err)
	}
}

// TestCoordinatorDown: a call to a coordinator that is not there is
// coordinator_down.
func TestCoordinatorDown(t *testing.T) {
	site := coordinatortest.New(t, coordinatortest.MemberLogin)
	site.Stop()
	_, err := site.Admin.Call(site.Ctx(), &pb.Request{Body: &pb.Request_Whoami{Whoami: &pb.Empty{}}})
	coordinatortest.WantCode(t, err, catalog.CodeCoordinatorDown)
}

func TestOpenNotLoggedIn(t *testing.T) {
	_, err := member.Open(relayFiles(t.TempDir()), mesh.HostConfig{})
	coordinatortest.WantCode(t, err, catalog.CodeNotLoggedIn)
}

// TestOpenRefusesAKeyOthersCanRead: the key is the member's identity at
// the coordinator; a copy other users can read is refused, as mesh's key
// files are.
func TestOpenRefusesAKeyOthersCanRead(t *testing.T) {
	site := coordinatortest.New(t, coordinatortest.MemberLogin)
	site.User("tech-1", pb.Role_ROLE_TECHNICIAN)
	f := coordinatortest.MemberFiles(site.Home("tech-1"))
	if err := os.Chmod(f.KeyPath(), 0o644); err != nil {
		t.Fatal(err)
	}
	if c, err := member.Open(f, mesh.HostConfig{}); err == nil {
		c.Close()
		t.Fatal("Open accepted a key file of mode 0644")
	}
}

// TestConfigWithoutRole: files written before the role was recorded still
// open, with an empty role.
func TestConfigWithoutRole(t *testing.T) {
	site := coordinatortest.New(t, coordinatortest.MemberLogin)
	site.User("tech-1", pb.Role_ROLE_TECHNICIAN)
	f := coordinatortest.MemberFiles(site.Home("tech-1"))
	cfg, err := f.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Role = ""
	if err := f.SaveConfig(cfg); err != nil {
		t.Fatal(err)
	}
	if raw, _ := os.ReadFile(f.ConfigPath()); json.Valid(raw) && containsKey(raw, "role") {
		t.Fatalf("an empty role is written: %s", raw)
	}
	c, err := member.Open(f, mesh.HostConfig{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Role() != "" || c.UserName() != "tech-1" {
		t.Fatalf("role %q user %q", c.Role(), c.UserName())
	}
}

func containsKey(raw []byte, key string) bool {
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	_, ok := m[key]
	return ok
}

// TestMigrate renames each old file whose new name is free, and only
// those: a finished migration, a half-finished one (a crash between the
// two renames) and a directory with both names all end with the new names
// holding what they should.
func TestMigrate(t *testing.T) {
	write := func(t *testing.T, path, content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	read := func(path string) string {
		raw, err := os.ReadFile(path)
		if err != nil {
			return "(missing)"
		}
		return string(raw)
	}
	for _, tc := range []struct {
		name                 string
		old, new             [2]string // key, config content; "" is no file
		wantMoved            bool
		wantNew, wantOldLeft [2]string
	}{
		{"old only", [2]string{"K", "C"}, [2]string{"", ""}, true, [2]string{"K", "C"}, [2]string{"(missing)", "(missing)"}},
		{"key moved, config not", [2]string{"", "C"}, [2]string{"K", ""}, true, [2]string{"K", "C"}, [2]string{"(missing)", "(missing)"}},
		{"both names", [2]string{"oldK", "oldC"}, [2]string{"K", "C"}, false, [2]string{"K", "C"}, [2]string{"oldK", "oldC"}},
		{"new only", [2]string{"", ""}, [2]string{"K", "C"}, false, [2]string{"K", "C"}, [2]string{"(missing)", "(missing)"}},
		{"nothing", [2]string{"", ""}, [2]string{"", ""}, false, [2]string{"(missing)", "(missing)"}, [2]string{"(missing)", "(missing)"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			oldF := member.Files{Dir: dir, Key: "technician.key", Config: "console.json"}
			newF := relayFiles(dir)
			for i, p := range []string{oldF.KeyPath(), oldF.ConfigPath()} {
				if tc.old[i] != "" {
					write(t, p, tc.old[i])
				}
			}
			for i, p := range []string{newF.KeyPath(), newF.ConfigPath()} {
				if tc.new[i] != "" {
					write(t, p, tc.new[i])
				}
			}
			moved, err := newF.Migrate(oldF)
			if err != nil || moved != tc.wantMoved {
				t.Fatalf("Migrate = %v, %v; want %v", moved, err, tc.wantMoved)
			}
			got := [2]string{read(newF.KeyPath()), read(newF.ConfigPath())}
			left := [2]string{read(oldF.KeyPath()), read(oldF.ConfigPath())}
			if got != tc.wantNew || left != tc.wantOldLeft {
				t.Fatalf("new files %q, old files %q; want %q, %q", got, left, tc.wantNew, tc.wantOldLeft)
			}
			if moved, err := newF.Migrate(oldF); err != nil || moved {
				t.Fatalf("second Migrate = %v, %v; want nothing to do", moved, err)
			}
		})
	}
}
