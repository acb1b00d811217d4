package coordinator_test

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

// harness is a real site on loopback: a coordinator with a real Badger in a
// temp dir and real libp2p hosts, plus consoles logged in through invites.
type harness struct {
	t     testing.TB
	dir   string
	clock *mesh.ManualClock
	coord *coordinator.Coordinator
	addr  string
	admin *console.Client
}

var testStart = time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)

func newHarness(t *testing.T) *harness { return newHarnessTB(t) }

func newHarnessTB(t testing.TB) *harness {
	t.Helper()
	h := &harness{t: t, dir: t.TempDir(), clock: mesh.NewManualClock(testStart)}
	res, err := coordinator.InitSite(coordinator.InitConfig{
		DataDir: filepath.Join(h.dir, "site"), Clock: h.clock, HTTPAddr: "127.0.0.1:0",
		// Fixed ports, so consoles find the coordinator again after a restart.
		Listen: []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t, "tcp")), fmt.Sprintf("/ip4/127.0.0.1/udp/%d/quic-v1", freePort(t, "udp"))},
	})
	if err != nil {
		t.Fatalf("init site: %v", err)
	}
	h.start()
	h.admin = h.login("admin", res.InviteCode)
	return h
}

// start runs the coordinator on the site (again, after stop).
func (h *harness) start() {
	h.t.Helper()
	c, err := coordinator.New(coordinator.Config{DataDir: filepath.Join(h.dir, "site"), Clock: h.clock})
	if err != nil {
		h.t.Fatalf("starting coordinator: %v", err)
	}
	h.coord = c
	h.addr = c.LoginAddrs()[0].String()
	h.t.Cleanup(func() { c.Close() })
}

func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	h.t.Cleanup(cancel)
	return ctx
}

// login redeems code in a fresh console home named home.
func (h *harness) login(home, code string) *console.Client {
	h.t.Helper()
	c, _, err := h.tryLogin(home, code)
	if err != nil {
		h.t.Fatalf("login %s: %v", home, err)
	}
	return c
}

func (h *harness) tryLogin(home, code string) (*console.Client, *pb.LoginResponse, error) {
	c, resp, err := console.Login(h.ctx(), filepath.Join(h.dir, "consoles", home), h.addr, code)
	if err == nil {
		h.t.Cleanup(func() { c.Close() })
	}
	return c, resp, err
}

// user invites name with role and logs it in from its own console.
func (h *harness) user(name string, role pb.Role) *console.Client {
	h.t.Helper()
	inv, err := h.admin.InviteUser(h.ctx(), name, role, time.Hour)
	if err != nil {
		h.t.Fatalf("invite %s: %v", name, err)
	}
	return h.login(name, inv.GetCode())
}

// wantCode fails unless err carries code.
func wantCode(t *testing.T, err error, code mesh.Code) {
	t.Helper()
	if mesh.CodeOf(err) != code {
		t.Fatalf("got error %v (code %q), want code %q", err, mesh.CodeOf(err), code)
	}
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

// freePort asks the kernel for a free loopback port.
func freePort(t testing.TB, network string) int {
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
