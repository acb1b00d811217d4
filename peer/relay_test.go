package peer_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	libp2ppeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
	"github.com/jumpmesh/jumpmesh/relay"
)

// startRelay enrolls and runs a site relay on loopback.
func startRelay(t *testing.T, site *coordinatortest.Site[*console.Client], name string) *relay.Relay {
	t.Helper()
	inv, err := site.Admin.InviteUser(site.Ctx(), name, pb.Role_ROLE_RELAY, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	r, err := relay.New(context.Background(), relay.Config{DataDir: filepath.Join(t.TempDir(), name), Coordinator: site.Addr,
		Invite: inv.GetCode(), Listen: []string{"/ip4/127.0.0.1/tcp/0"}, HTTPAddr: "off", Refresh: 200 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatalf("relay: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; r.Close() })
	return r
}

// TestJumpThroughARelay: a peer reachable only through the site's relay
// (the console is made to ignore its direct addresses) still gets jumps,
// and the path says so.
func TestJumpThroughARelay(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	r := startRelay(t, site, "relay-1")
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "behind-nat"})
	waitReservation(t, h, r)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	coordinatortest.Eventually(t, 20*time.Second, "a jump through the relay", func() bool {
		j, err := site.Admin.Jump(ctx, "behind-nat", grant.Exec)
		if err != nil || len(j.Relays) == 0 {
			return false
		}
		j.ForceRelay = true
		ch, err := j.Open(ctx, execOpen("echo", "relayed"))
		if err != nil {
			t.Logf("relays %v: %v", j.Relays, err)
			site.Admin.Host().Network().ClosePeer(j.ID)
			return false
		}
		out.Reset()
		st, err := console.Exec(ctx, ch, console.ExecIO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: &out})
		if err != nil || st.GetCode() != 0 {
			return false
		}
		if path := j.Path(); !(path.Kind == console.PathRelayed && path.Relay == r.ID()) && path.Kind != console.PathDirect {
			t.Fatalf("path %s", path)
		}
		j.ReportPath(ctx)
		return true
	})
	if out.String() != "relayed\n" {
		t.Fatalf("output %q", out.String())
	}
	// The session started relayed; the coordinator counted it so.
	st, err := site.Admin.PathStats(ctx)
	if err != nil || st.GetRelayed()+st.GetUpgraded() != 1 || st.GetDirect() != 0 {
		t.Fatalf("path stats %v %v", st, err)
	}
	_ = h
}

// waitReservation waits until the peer installed in h says it holds a
// reservation on r.
func waitReservation(t *testing.T, h *host, r *relay.Relay) {
	t.Helper()
	coordinatortest.Eventually(t, 30*time.Second, "a reservation on "+r.ID().String(), func() bool {
		st, err := peer.LocalStatus(h.dir)
		return err == nil && slices.Contains(st.Relays, r.ID().String())
	})
}

func testLogger() *slog.Logger {
	if os.Getenv("JM_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestRelayLossAndReplacement: killing the only relay during a relayed
// session ends it with a clear error, and once another relay is up a new
// jump works through it.
func TestRelayLossAndReplacement(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	first := startRelay(t, site, "relay-1")
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "behind-nat"})
	waitReservation(t, h, first)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	jumpRelayed := func() (*console.Jump, error) {
		j, err := site.Admin.Jump(ctx, "behind-nat", grant.Exec)
		if err != nil {
			return nil, err
		}
		j.ForceRelay = true
		return j, nil
	}
	j, err := jumpRelayed()
	if err != nil {
		t.Fatal(err)
	}
	ch, err := j.Open(ctx, execOpen("cat"))
	if err != nil {
		t.Fatal(err)
	}
	if j.Path().Kind != console.PathRelayed {
		t.Skipf("the session went direct at once (%s); nothing to lose", j.Path())
	}
	result := make(chan error, 1)
	go func() {
		_, err := console.Exec(ctx, ch, console.ExecIO{Stdin: blockingReader{ctx}, Stdout: io.Discard, Stderr: io.Discard})
		result <- err
	}()
	first.Close() // the only relay goes away mid-session
	select {
	case err := <-result:
		if catalog.CodeOf(err) != catalog.CodeConnectionLost {
			t.Fatalf("session ended with %v, want connection_lost", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the session did not notice the relay was gone")
	}
	site.Admin.Host().Network().ClosePeer(j.ID)

	// Another relay comes up; the coordinator tells the peer, which
	// reserves on it, and a new jump goes through.
	second := startRelay(t, site, "relay-2")
	waitReservation(t, h, second)
	var out strings.Builder
	coordinatortest.Eventually(t, 30*time.Second, "a jump through the new relay", func() bool {
		j, err := jumpRelayed()
		if err != nil {
			return false
		}
		ch, err := j.Open(ctx, execOpen("echo", "again"))
		if err != nil {
			site.Admin.Host().Network().ClosePeer(j.ID)
			return false
		}
		out.Reset()
		st, err := console.Exec(ctx, ch, console.ExecIO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: io.Discard})
		return err == nil && st.GetCode() == 0
	})
	if out.String() != "again\n" {
		t.Fatalf("output %q", out.String())
	}
}

// blockingReader blocks until ctx ends: a stdin that never closes.
type blockingReader struct{ ctx context.Context }

func (b blockingReader) Read([]byte) (int, error) { <-b.ctx.Done(); return 0, io.EOF }

// TestRelayRestartReservesAgain: a relay restarted with the same identity
// and address has forgotten every reservation. The peer notices that the
// connection to it ended, drops the reservation (peer status shows none),
// reserves again when the relay is back, and a jump goes through it.
func TestRelayRestartReservesAgain(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (harness_test.go)
	site := coordinatortest.New(t, console.Login)
	inv, err := site.Admin.InviteUser(site.Ctx(), "relay-1", pb.Role_ROLE_RELAY, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cfg := relay.Config{DataDir: filepath.Join(t.TempDir(), "relay-1"), Coordinator: site.Addr, Invite: inv.GetCode(),
		Listen: []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", coordinatortest.FreePort(t, "tcp"))}, HTTPAddr: "off",
		Refresh: 200 * time.Millisecond, Logger: testLogger()}
	run := func() (stop func()) {
		r, err := relay.New(context.Background(), cfg)
		if err != nil {
			t.Fatalf("relay: %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- r.Run(ctx) }()
		var once sync.Once
		stop = func() { once.Do(func() { cancel(); <-done; r.Close() }) }
		t.Cleanup(stop)
		return stop
	}
	stop := run()
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "behind-nat"})
	holds := func(want bool) func() bool {
		return func() bool {
			st, err := peer.LocalStatus(h.dir)
			return err == nil && (len(st.Relays) > 0) == want
		}
	}
	coordinatortest.Eventually(t, 30*time.Second, "a reservation", holds(true))
	stop()
	coordinatortest.Eventually(t, 30*time.Second, "the lost reservation dropped", holds(false))
	cfg.Invite = "" // enrolled already: same key, same address
	run()
	coordinatortest.Eventually(t, 30*time.Second, "a reservation on the restarted relay", holds(true))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	j, err := site.Admin.Jump(ctx, "behind-nat", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	j.ForceRelay = true
	ch, err := j.Open(ctx, execOpen("echo", "back"))
	if err != nil {
		t.Fatalf("jump through the restarted relay: %v", err)
	}
	var out strings.Builder
	if st, err := console.Exec(ctx, ch, console.ExecIO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: io.Discard}); err != nil || st.GetCode() != 0 || out.String() != "back\n" {
		t.Fatalf("exec: %v %v %q", st, err, out.String())
	}
}

// TestSessionFollowsToTheDirectConnection: a session that started on a
// relayed connection opens its next channel on the direct connection that
// appeared meanwhile (as after a hole punch) with the same grant, and keeps
// opening channels there once the relayed connection is gone.
func TestSessionFollowsToTheDirectConnection(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	r := startRelay(t, site, "relay-1")
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "behind-nat"})
	waitReservation(t, h, r)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ch := site.Admin.Host()
	exec := func(j *console.Jump, word string) error {
		c, err := j.Open(ctx, execOpen("echo", word))
		if err != nil {
			return err
		}
		var out strings.Builder
		st, err := console.Exec(ctx, c, console.ExecIO{Stdin: strings.NewReader(""), Stdout: &out, Stderr: io.Discard})
		if err == nil && (st.GetCode() != 0 || out.String() != word+"\n") {
			err = fmt.Errorf("exit %d, output %q", st.GetCode(), out.String())
		}
		return err
	}
	var j *console.Jump
	coordinatortest.Eventually(t, 20*time.Second, "a first channel through the relay", func() bool {
		var err error
		if j, err = site.Admin.Jump(ctx, "behind-nat", grant.Exec); err != nil {
			return false
		}
		j.ForceRelay = true
		if err := exec(j, "relayed"); err != nil {
			ch.Network().ClosePeer(j.ID)
			return false
		}
		return true
	})
	if j.Path().Kind != console.PathRelayed {
		t.Fatalf("first path %s", j.Path())
	}
	// A direct connection appears, as a hole punch would add it.
	if err := ch.Connect(network.WithForceDirectDial(ctx, "test"), libp2ppeer.AddrInfo{ID: j.ID, Addrs: j.Addrs}); err != nil {
		t.Fatal(err)
	}
	if j.Path().Kind != console.PathDirect {
		t.Fatalf("no direct connection: %s", j.Path())
	}
	if err := exec(j, "direct"); err != nil {
		t.Fatalf("the session's channel on the direct connection: %v", err)
	}
	for _, c := range ch.Network().ConnsToPeer(j.ID) {
		if strings.Contains(c.RemoteMultiaddr().String(), "/p2p-circuit") {
			c.Close()
		}
	}
	if err := exec(j, "still"); err != nil {
		t.Fatalf("after the relayed connection ended: %v", err)
	}
}
