// Package coordinatortest runs a real site for tests: a coordinator with a
// real Badger in a temp dir and real libp2p hosts on loopback, an injected
// clock, and consoles logged in through invites. Tests of every party build
// on it so they read like the user story.
package coordinatortest

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Start is the injected clock's starting time.
var Start = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// Site is a running test site.
type Site struct {
	T     testing.TB
	Dir   string
	Clock *mesh.ManualClock
	Coord *coordinator.Coordinator
	// Addr is the coordinator's TCP login address (with /p2p/).
	Addr  string
	Admin *console.Client
	// listen are fixed ports, so consoles and peers find a restarted
	// coordinator again.
	listen []string
}

// New inits a site in a temp dir, runs its coordinator and logs in the
// first administrator.
func New(t testing.TB) *Site {
	t.Helper()
	s := &Site{T: t, Dir: t.TempDir(), Clock: mesh.NewManualClock(Start)}
	s.listen = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", FreePort(t, "tcp")), fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", FreePort(t, "udp"))}
	res, err := coordinator.InitSite(coordinator.InitConfig{DataDir: s.DataDir(), Clock: s.Clock, HTTPAddr: "127.0.0.1:0", Listen: s.listen})
	if err != nil {
		t.Fatalf("init site: %v", err)
	}
	s.Start()
	s.Admin = s.Login("admin", res.InviteCode)
	return s
}

// DataDir is the coordinator's data directory.
func (s *Site) DataDir() string { return filepath.Join(s.Dir, "site") }

// Start runs the coordinator (again, after Stop).
func (s *Site) Start() {
	s.T.Helper()
	c, err := coordinator.New(coordinator.Config{DataDir: s.DataDir(), Clock: s.Clock})
	if err != nil {
		s.T.Fatalf("starting coordinator: %v", err)
	}
	s.Coord = c
	s.Addr = c.LoginAddrs()[0].String()
	s.T.Cleanup(func() { c.Close() })
}

// Stop stops the coordinator.
func (s *Site) Stop() {
	s.T.Helper()
	if err := s.Coord.Close(); err != nil {
		s.T.Fatalf("stopping coordinator: %v", err)
	}
}

// Ctx is a context bounded for one test step.
func (s *Site) Ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	s.T.Cleanup(cancel)
	return ctx
}

// Login redeems code in a fresh console home named home.
func (s *Site) Login(home, code string) *console.Client {
	s.T.Helper()
	c, _, err := s.TryLogin(home, code)
	if err != nil {
		s.T.Fatalf("login %s: %v", home, err)
	}
	return c
}

// TryLogin is Login that returns the error.
func (s *Site) TryLogin(home, code string) (*console.Client, *pb.LoginResponse, error) {
	c, resp, err := console.Login(s.Ctx(), filepath.Join(s.Dir, "consoles", home), s.Addr, code)
	if err == nil {
		s.T.Cleanup(func() { c.Close() })
	}
	return c, resp, err
}

// User invites name with role and logs it in from its own console.
func (s *Site) User(name string, role pb.Role) *console.Client {
	s.T.Helper()
	inv, err := s.Admin.InviteUser(s.Ctx(), name, role, time.Hour)
	if err != nil {
		s.T.Fatalf("invite %s: %v", name, err)
	}
	return s.Login(name, inv.GetCode())
}

// Installer creates an installer key with defaults d, valid for validFor.
func (s *Site) Installer(d *pb.InstallerDefaults, overridable uint32, validFor time.Duration) *pb.Installer {
	s.T.Helper()
	in, err := s.Admin.CreateInstaller(s.Ctx(), &pb.InstallerCreateRequest{Defaults: d, Overridable: overridable, ValidForSeconds: int64(validFor / time.Second)})
	if err != nil {
		s.T.Fatalf("create installer: %v", err)
	}
	return in
}

// Eventually polls cond every 20 ms until it holds or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		<-tick.C
	}
}

// WantCode fails unless err carries code.
func WantCode(t testing.TB, err error, code mesh.Code) {
	t.Helper()
	if mesh.CodeOf(err) != code {
		t.Fatalf("got error %v (code %q), want code %q", err, mesh.CodeOf(err), code)
	}
}

// FreePort asks the kernel for a free loopback port.
func FreePort(t testing.TB, network string) int {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port
	}
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// WantNoPanic runs fn and returns the catalog code of its error.
func WantNoPanic(fn func() error) mesh.Code { return mesh.CodeOf(fn()) }
