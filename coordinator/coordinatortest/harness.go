// Package coordinatortest runs a real site for tests: a coordinator with a
// real Badger in a temp dir and real libp2p hosts on loopback, an injected
// clock, and members logged in through invites. Tests of every party build
// on it so they read like the user story.
//
// The harness is generic over the client its members log in with, so it
// imports no other party: a test passes console.Login for technicians'
// consoles (coordinatortest.New(t, console.Login)), or MemberLogin for
// bare site members (mesh/member). The harness itself needs of a client only
// the control call and Close (Member).
package coordinatortest

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/etcdtest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/member"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Start is the injected clock's starting time.
var Start = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

// Member is what the harness needs of a logged-in client: *member.Client
// and *console.Client are both one.
type Member interface {
	Call(ctx context.Context, req *pb.Request) (*pb.Response, error)
	Close() error
}

// LoginFunc redeems an invite code at the coordinator address addr into the
// directory home: console.Login, or MemberLogin.
type LoginFunc[C Member] func(ctx context.Context, home, addr, code string) (C, *pb.LoginResponse, error)

// MemberLogin logs a bare site member in (mesh/member, a dial-only host),
// keeping member.key and member.json in home.
func MemberLogin(ctx context.Context, home, addr, code string) (*member.Client, *pb.LoginResponse, error) {
	return member.Login(ctx, MemberFiles(home), addr, code, mesh.HostConfig{})
}

// MemberFiles are the files MemberLogin keeps in home.
func MemberFiles(home string) member.Files {
	return member.Files{Dir: home, Key: "member.key", Config: "member.json"}
}

// Site is a running test site whose members log in with clients of type C.
type Site[C Member] struct {
	T     testing.TB
	Dir   string
	Clock *mesh.ManualClock
	Coord *coordinator.Coordinator
	// Addr is the coordinator's TCP login address (with /p2p/).
	Addr  string
	Admin C
	// Resources bound the coordinator from its next Start (zero fields:
	// the defaults); set it and restart (Stop, Start) to tune a site.
	Resources coordinator.Resources
	// Store is where the coordinator keeps its records: Badger in the data
	// directory, or, with JM_TEST_STORE=etcd in the environment, an etcd
	// member started for the site (the whole suite then runs on etcd).
	Store coordinator.StoreConfig
	// listen are fixed ports, so consoles and peers find a restarted
	// coordinator again.
	listen []string
	login  LoginFunc[C]
}

// New inits a site in a temp dir, runs its coordinator and logs in the
// first administrator with login.
func New[C Member](t testing.TB, login LoginFunc[C]) *Site[C] {
	t.Helper()
	s := &Site[C]{T: t, Dir: t.TempDir(), Clock: mesh.NewManualClock(Start), login: login}
	s.listen = freeListen(t)
	res, err := coordinator.InitSite(coordinator.InitConfig{DataDir: s.DataDir(), Clock: s.Clock, HTTPAddr: "127.0.0.1:0", Listen: s.listen})
	if err != nil {
		t.Fatalf("init site: %v", err)
	}
	if os.Getenv("JM_TEST_STORE") == "etcd" {
		srv := etcdtest.Start(t, etcdtest.Options{})
		s.Store = coordinator.StoreConfig{URL: "etcd://" + srv.Endpoint}
		if _, err := coordinator.Migrate(coordinator.MigrateConfig{DataDir: s.DataDir(), To: s.Store}); err != nil {
			t.Fatalf("moving the site to etcd: %v", err)
		}
	}
	s.Start()
	s.Admin = s.Login("admin", res.InviteCode)
	return s
}

// DataDir is the coordinator's data directory.
func (s *Site[C]) DataDir() string { return filepath.Join(s.Dir, "site") }

// Start runs the coordinator (again, after Stop).
func (s *Site[C]) Start() {
	s.T.Helper()
	c, err := coordinator.New(coordinator.Config{DataDir: s.DataDir(), Clock: s.Clock, Resources: s.Resources, Store: s.Store, Listen: s.listen})
	if err != nil {
		s.T.Fatalf("starting coordinator: %v", err)
	}
	s.Coord = c
	s.Addr = c.LoginAddrs()[0].String()
	s.T.Cleanup(func() { c.Close() })
}

// Stop stops the coordinator.
func (s *Site[C]) Stop() {
	s.T.Helper()
	if err := s.Coord.Close(); err != nil {
		s.T.Fatalf("stopping coordinator: %v", err)
	}
}

// Move restarts the coordinator at other ports (the site's key and
// records stay): what a member knew of its addresses, its members' lane
// included, leads nowhere any more.
func (s *Site[C]) Move() {
	s.T.Helper()
	s.Stop()
	s.listen = freeListen(s.T)
	s.Start()
}

// freeListen are loopback TCP and QUIC addresses on free ports.
func freeListen(t testing.TB) []string {
	return []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", FreePort(t, "tcp")), fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", FreePort(t, "udp"))}
}

// Ctx is a context bounded for one test step.
func (s *Site[C]) Ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	s.T.Cleanup(cancel)
	return ctx
}

// Login redeems code in a fresh member directory named home.
func (s *Site[C]) Login(home, code string) C {
	s.T.Helper()
	c, _, err := s.TryLogin(home, code)
	if err != nil {
		s.T.Fatalf("login %s: %v", home, err)
	}
	return c
}

// TryLogin is Login that returns the error.
func (s *Site[C]) TryLogin(home, code string) (C, *pb.LoginResponse, error) {
	c, resp, err := s.login(s.Ctx(), s.Home(home), s.Addr, code)
	if err == nil {
		s.T.Cleanup(func() { c.Close() })
	}
	return c, resp, err
}

// Home is the directory of the member named home.
func (s *Site[C]) Home(home string) string { return filepath.Join(s.Dir, "consoles", home) }

// User invites name with role and logs it in from its own directory.
func (s *Site[C]) User(name string, role pb.Role) C {
	s.T.Helper()
	return s.Login(name, s.Invite(name, role))
}

// Invite creates (or adds a device to) the user name with role and returns
// its one-time code, valid for an hour.
func (s *Site[C]) Invite(name string, role pb.Role) string {
	s.T.Helper()
	resp, err := s.Admin.Call(s.Ctx(), &pb.Request{Body: &pb.Request_UserInvite{UserInvite: &pb.UserInviteRequest{
		Name: name, Role: role, ValidForSeconds: int64(time.Hour / time.Second)}}})
	if err != nil {
		s.T.Fatalf("invite %s: %v", name, err)
	}
	return resp.GetInvite().GetCode()
}

// Installer creates an installer key with defaults d, valid for validFor.
func (s *Site[C]) Installer(d *pb.InstallerDefaults, overridable uint32, validFor time.Duration) *pb.Installer {
	s.T.Helper()
	resp, err := s.Admin.Call(s.Ctx(), &pb.Request{Body: &pb.Request_InstallerCreate{InstallerCreate: &pb.InstallerCreateRequest{
		Defaults: d, Overridable: overridable, ValidForSeconds: int64(validFor / time.Second)}}})
	if err != nil {
		s.T.Fatalf("create installer: %v", err)
	}
	return resp.GetInstaller()
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
func WantCode(t testing.TB, err error, code catalog.Code) {
	t.Helper()
	if catalog.CodeOf(err) != code {
		t.Fatalf("got error %v (code %q), want code %q", err, catalog.CodeOf(err), code)
	}
}

// FreePort returns a loopback port free now, for a test that must name a
// port before it binds it. It picks below the kernel's ephemeral range
// (net.ipv4.ip_local_port_range, 32768–60999 on Debian), where no socket
// bound to port 0 lands: a port the kernel handed out was taken, seconds
// later, by another package's QUIC or etcd listening on port 0 ("address
// already in use" in TestPassivePeer). Only another explicit pick can
// collide, one chance in ~20,000. The port is free for TCP and UDP both;
// network names the one the caller means, for the message.
func FreePort(t testing.TB, network string) int {
	t.Helper()
	lo, hi := 20000, ephemeralLow()
	for range 100 {
		port := lo + mrand.IntN(hi-lo)
		if portFree(port) {
			return port
		}
	}
	t.Fatalf("no free %s port in [%d, %d) after 100 tries", network, lo, hi)
	return 0
}

// ephemeralLow is the lowest port the kernel hands out for port 0.
func ephemeralLow() int {
	raw, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(raw)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 21000 {
				return n
			}
		}
	}
	return 32768
}

// portFree reports whether port is free on loopback for TCP and UDP both
// (a passive peer listens on both with one number).
func portFree(port int) bool {
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return false
	}
	defer c.Close()
	l, err := net.Listen("tcp4", addr)
	if err != nil {
		return false
	}
	return l.Close() == nil
}

// WantNoPanic runs fn and returns the catalog code of its error.
func WantNoPanic(fn func() error) catalog.Code { return catalog.CodeOf(fn()) }
