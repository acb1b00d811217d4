package console_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestDefaultHomeHonoursEnv(t *testing.T) {
	t.Setenv(console.HomeEnv, "/somewhere/else")
	if h, err := console.DefaultHome(); err != nil || h != "/somewhere/else" {
		t.Fatalf("DefaultHome = %q, %v", h, err)
	}
	t.Setenv(console.HomeEnv, "")
	t.Setenv("XDG_CONFIG_HOME", "/cfg")
	if h, err := console.DefaultHome(); err != nil || h != "/cfg/jumpmesh" {
		t.Fatalf("DefaultHome = %q, %v", h, err)
	}
}

func TestOpenWithoutLogin(t *testing.T) {
	_, err := console.Open(t.TempDir())
	if catalog.CodeOf(err) != catalog.CodeNotLoggedIn {
		t.Fatalf("got %v, want not_logged_in", err)
	}
}

func TestLoginKeepsKeyAndRecordsSite(t *testing.T) {
	dir := t.TempDir()
	res, err := coordinator.InitSite(coordinator.InitConfig{DataDir: filepath.Join(dir, "site"), HTTPAddr: "off",
		Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		t.Fatal(err)
	}
	coord, err := coordinator.New(coordinator.Config{DataDir: filepath.Join(dir, "site")})
	if err != nil {
		t.Fatal(err)
	}
	defer coord.Close()
	addr := coord.LoginAddrs()[0].String()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	home := filepath.Join(dir, "home")

	// A wrong code fails, keeps the key (an identity, reused next time) and
	// records no site.
	_, _, err = console.Login(ctx, home, addr, "wrong-code")
	if catalog.CodeOf(err) != catalog.CodeInviteInvalid {
		t.Fatalf("got %v, want invite_invalid", err)
	}
	if _, err := os.Stat(filepath.Join(home, "console.json")); !os.IsNotExist(err) {
		t.Fatalf("failed login wrote console.json: %v", err)
	}
	keyBefore, err := os.ReadFile(filepath.Join(home, "technician.key"))
	if err != nil {
		t.Fatal(err)
	}

	c, resp, err := console.Login(ctx, home, addr, res.InviteCode)
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetUser().GetName() != "admin" || c.UserName() != "admin" || c.Site() != res.SiteID {
		t.Fatalf("login response %v", resp)
	}
	keyAfter, _ := os.ReadFile(filepath.Join(home, "technician.key"))
	if string(keyBefore) != string(keyAfter) {
		t.Fatal("login replaced an existing key")
	}
	c.Close()

	// Open finds the site again from the home alone.
	c, err = console.Open(home)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d, err := c.WhoAmI(ctx)
	if err != nil || d.GetUser().GetRole() != pb.Role_ROLE_ADMIN {
		t.Fatalf("whoami after reopen: %v %v", d, err)
	}
	if c.CoordinatorAddr() != addr {
		t.Fatalf("coordinator addr %q, want %q", c.CoordinatorAddr(), addr)
	}
}

func TestLoginRefusesAddressWithoutSiteID(t *testing.T) {
	ctx := context.Background()
	_, _, err := console.Login(ctx, t.TempDir(), "/ip4/127.0.0.1/tcp/4830", "code")
	if catalog.CodeOf(err) != catalog.CodeInvalidArgument {
		t.Fatalf("got %v", err)
	}
	_, _, err = console.Login(ctx, t.TempDir(), "127.0.0.1:4830", "code")
	if catalog.CodeOf(err) != catalog.CodeInvalidArgument {
		t.Fatalf("got %v", err)
	}
}
