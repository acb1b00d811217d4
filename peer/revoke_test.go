package peer_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/words"
)

// Issue 11 (3): revocation never reached a live connection. alice runs a
// forward through web-01 (a real console.Forwarder, peer and coordinator on
// loopback); the attack is to keep using it after her access is gone.

// echoTarget is a TCP echo server the peer forwards to; it closes the
// connections it serves when the test ends.
func echoTarget(t *testing.T) console.ForwardTarget {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); _, _ = io.Copy(c, c) }()
		}
	}()
	return console.ForwardTarget{Host: "127.0.0.1", Port: ln.Addr().(*net.TCPAddr).Port}
}

// forward is a running forward: local address, the forwarder, and the
// errors of the connections it could not carry.
type forward struct {
	addr string
	fw   *console.Forwarder
	errs chan error
}

func startForward(t *testing.T, c *console.Client, ref string, to console.ForwardTarget) *forward {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	fw, err := console.NewForwarder(ctx, c, ref)
	if err != nil {
		cancel()
		t.Fatalf("forward %s: %v", ref, err)
	}
	f := &forward{fw: fw, errs: make(chan error, 100)}
	fw.OnError = func(_ net.Conn, err error) {
		select {
		case f.errs <- err:
		default:
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f.addr = ln.Addr().String()
	done := make(chan struct{})
	go func() { defer close(done); fw.Serve(ctx, ln, to) }()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

// dial opens a local connection through the forward.
func (f *forward) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", f.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echo sends a line on c and reads it back.
func echo(c net.Conn, line string) error {
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	defer c.SetDeadline(time.Time{})
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return err
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if got != line+"\n" {
		return errors.New("echoed " + strconv.Quote(got))
	}
	return nil
}

// mustEcho fails unless a round trip on c works.
func mustEcho(t *testing.T, c net.Conn, what string) {
	t.Helper()
	if err := echo(c, "ping"); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// waitClosed fails unless the peer ends c within a few seconds.
func waitClosed(t *testing.T, c net.Conn, what string) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s: the open connection was not closed (read: %v)", what, err)
	}
}

// waitRefused polls new connections through f until one is not carried,
// and wants the forwarder to have reported code for one.
func waitRefused(t *testing.T, f *forward, code catalog.Code, what string) {
	t.Helper()
	coordinatortest.Eventually(t, 10*time.Second, what, func() bool {
		c := f.dial(t)
		defer c.Close()
		return echo(c, "again") != nil
	})
	var seen []error
	deadline := time.After(10 * time.Second)
	for {
		select {
		case err := <-f.errs:
			if catalog.CodeOf(err) == code {
				return
			}
			seen = append(seen, err) // e.g. the open connection the peer reset
		case <-deadline:
			t.Fatalf("%s: the forwarder reported %v, not %s", what, seen, code)
		}
	}
}

// aliceOnWeb01 is the review's site: web-01 in jumpgroup:servers, alice a
// technician in that group running a forward through it.
func aliceOnWeb01(t *testing.T, d *pb.InstallerDefaults) (*coordinatortest.Site[*console.Client], *console.Client, *forward) {
	site := coordinatortest.New(t, console.Login)
	alice := site.User("alice", pb.Role_ROLE_TECHNICIAN)
	if _, err := site.Admin.CreateGroup(site.Ctx(), "servers", "Servers", []*pb.GroupMember{{User: "alice"}}); err != nil {
		t.Fatal(err)
	}
	d.Name, d.Group = "web-01", words.SharedGroupPrefix+"servers"
	onlinePeer(t, site, d)
	return site, alice, startForward(t, alice, "web-01", echoTarget(t))
}

func TestRevocationUserRemovedCutsHerForward(t *testing.T) {
	site, _, f := aliceOnWeb01(t, &pb.InstallerDefaults{})
	open := f.dial(t)
	mustEcho(t, open, "alice's forward before")
	mustEcho(t, f.dial(t), "a second connection before")

	if err := site.Admin.RemoveUser(site.Ctx(), "alice"); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, open, "after user remove")
	// The peer withdrew her grant; asking for a fresh one, she is a stranger.
	waitRefused(t, f, catalog.CodeUnknownTechnician, "alice's new connections refused")
}

func TestRevocationPolicyChangedToDenyCutsTheForward(t *testing.T) {
	site, _, f := aliceOnWeb01(t, &pb.InstallerDefaults{})
	ctx := site.Ctx()
	if _, err := site.Admin.PutSessionPolicy(ctx, &pb.SessionPolicy{Name: "files-only", FileTransfer: true}, true); err != nil {
		t.Fatal(err)
	}
	open := f.dial(t)
	mustEcho(t, open, "forward before")

	_, err := site.Admin.SetPeer(ctx, "web-01", &pb.InstallerDefaults{SessionPolicyPresent: "files-only", SessionPolicyNotPresent: "files-only"},
		uint32(installerkey.FieldSessionPolicyPresent|installerkey.FieldSessionPolicyNotPresent))
	if err != nil {
		t.Fatal(err)
	}
	waitClosed(t, open, "after the peer's policy changed")
	waitRefused(t, f, catalog.CodePermissionDenied, "new connections refused")
}

func TestRevocationSessionPolicyRulesChanged(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	if _, err := site.Admin.PutSessionPolicy(ctx, &pb.SessionPolicy{Name: "ops", Forward: true, Shell: true}, true); err != nil {
		t.Fatal(err)
	}
	onlinePeer(t, site, &pb.InstallerDefaults{Name: "web-01", SessionPolicyPresent: "ops", SessionPolicyNotPresent: "ops"})
	f := startForward(t, site.Admin, "web-01", echoTarget(t))
	open := f.dial(t)
	mustEcho(t, open, "forward before")
	// The policy keeps its name and loses forward.
	if _, err := site.Admin.PutSessionPolicy(ctx, &pb.SessionPolicy{Name: "ops", Shell: true}, false); err != nil {
		t.Fatal(err)
	}
	waitClosed(t, open, "after the session policy changed")
	waitRefused(t, f, catalog.CodePermissionDenied, "new connections refused")
}

func TestRevocationJumpWindowCloses(t *testing.T) {
	// coordinatortest.Start is a Sunday, 10:00 UTC.
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	w, err := coordinator.ParseWindow("sun 10:00-10:03")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := site.Admin.PutJumpPolicy(ctx, &pb.JumpPolicy{Name: "morning", TimeZone: "UTC", Windows: []*pb.Window{w}}, true); err != nil {
		t.Fatal(err)
	}
	onlinePeer(t, site, &pb.InstallerDefaults{Name: "web-01", JumpPolicy: "morning"})
	f := startForward(t, site.Admin, "web-01", echoTarget(t))
	open := f.dial(t)
	mustEcho(t, open, "forward inside the window")

	site.Clock.Advance(4 * time.Minute) // the window closed; the grant's own bound has not passed
	site.Coord.Service().CheckJumpWindows(site.Clock.Now())
	waitClosed(t, open, "after the jump window closed")
	waitRefused(t, f, catalog.CodeJumpPolicyClosed, "new connections refused")
}

// A grant opens channels for grant.DefaultOpenFor; then the peer refuses it
// and the forward gets a fresh one without the user noticing.
func TestGrantOpenBoundAndTransparentRefresh(t *testing.T) {
	site, _, f := aliceOnWeb01(t, &pb.InstallerDefaults{})
	open := f.dial(t)
	mustEcho(t, open, "forward before the bound")
	old := f.fw.Jump()
	fwd := &pb.ChannelOpen{Kind: &pb.ChannelOpen_Forward{Forward: &pb.ForwardOpen{Host: "127.0.0.1", Port: 1}}}

	site.Clock.Advance(grant.DefaultOpenFor - time.Second)
	mustEcho(t, f.dial(t), "just inside the bound")
	if f.fw.Jump() != old {
		t.Fatal("the forward asked for a new grant inside the bound")
	}
	site.Clock.Advance(time.Second)
	_, err := old.Open(site.Ctx(), fwd)
	coordinatortest.WantCode(t, err, catalog.CodeGrantExpired)

	mustEcho(t, f.dial(t), "after the bound, through a fresh grant")
	if f.fw.Jump() == old {
		t.Fatal("the forward kept its old grant")
	}
	mustEcho(t, open, "a connection opened before the bound") // the bound does not cut open channels
}
