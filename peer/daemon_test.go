package peer_test

import (
	"context"
	"io"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

// TestCloseWithLiveSessions: Close, with Run still running and two
// sessions open, ends Run and the sessions, returns, and leaves no
// goroutine once the site is gone too.
func TestCloseWithLiveSessions(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) }) // runs last: after the site's cleanups
	site := coordinatortest.New(t, console.Login)
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "web-01"})

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	j, err := site.Admin.Jump(ctx, "web-01", grant.Exec)
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan error, 2)
	for range 2 {
		ch, err := j.Open(ctx, execOpen("cat")) // runs until its stdin ends: never
		if err != nil {
			t.Fatalf("open: %v", err)
		}
		go func() {
			defer ch.Close()
			_, err := console.Exec(ctx, ch, console.ExecIO{Stdin: blockingReader{ctx}, Stdout: io.Discard, Stderr: io.Discard})
			ended <- err
		}()
	}

	closed := make(chan error, 1)
	go func() { closed <- h.d.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("Close did not return with sessions open")
	}
	select {
	case err := <-h.done:
		if err != nil {
			t.Fatalf("Run returned %v after Close, want nil", err)
		}
		h.cancel = nil // stopped already
	default:
		t.Fatal("Run still running after Close returned")
	}
	for range 2 {
		select {
		case <-ended:
		case <-ctx.Done():
			t.Fatal("a session outlived the daemon")
		}
	}
	if err := h.d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := h.d.Run(context.Background()); err != peer.ErrClosed {
		t.Fatalf("Run after Close: %v, want ErrClosed", err)
	}
}

// TestCloseWithoutRun: a daemon opened and closed without running leaves
// nothing behind.
func TestCloseWithoutRun(t *testing.T) {
	before := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, before) })
	site := coordinatortest.New(t, console.Login)
	h := install(t, site, site.Installer(nil, 0, week()).GetKey(), peer.InstallOptions{})
	d, err := peer.Open(peer.RunConfig{Dir: h.dir, Clock: site.Clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestReconnectWaitsOnTheClock: the reconnect backoff is a timer of the
// daemon's clock. With an hour of backoff, a peer whose coordinator
// restarted is back as soon as the manual clock moves an hour, in no wall
// time.
func TestReconnectWaitsOnTheClock(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	h := install(t, site, site.Installer(nil, 0, week()).GetKey(), peer.InstallOptions{})
	h.backoff = peer.Backoff{Base: time.Hour, Max: time.Hour}
	id := h.id()
	h.start()
	h.waitStatus(id, "online")
	site.Stop()
	// Noticed (its statistics timer stopped), the peer waits to reconnect.
	coordinatortest.Eventually(t, 20*time.Second, "the peer noticing", func() bool {
		st, err := peer.LocalStatus(h.dir)
		return err == nil && !st.Connected
	})
	waitClockTimer(t, site.Clock, "the reconnect wait")
	site.Start()
	site.Clock.Advance(time.Hour)
	h.waitStatus(id, "online")
}

// TestStatisticsOnTheClock: statistics are reported every interval of the
// daemon's clock.
func TestStatisticsOnTheClock(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	h := onlinePeer(t, site, nil)
	contact := func() time.Time {
		st, err := peer.LoadState(h.dir)
		if err != nil {
			t.Fatal(err)
		}
		return st.LastContact
	}
	coordinatortest.Eventually(t, 10*time.Second, "the first report", func() bool { return contact().Equal(site.Clock.Now()) })
	st, err := peer.LoadState(h.dir)
	if err != nil {
		t.Fatal(err)
	}
	every := max(time.Duration(st.StatsIntervalSeconds)*time.Second, 5*time.Second)
	for range 3 {
		waitClockTimer(t, site.Clock, "the statistics timer")
		site.Clock.Advance(every)
		coordinatortest.Eventually(t, 10*time.Second, "a report at the new time", func() bool { return contact().Equal(site.Clock.Now()) })
	}
}

// waitClockTimer waits until a timer waits on clock, so that moving the
// clock fires it (moved earlier, the timer would start after the move).
func waitClockTimer(t *testing.T, clock *mesh.ManualClock, what string) {
	t.Helper()
	coordinatortest.Eventually(t, 20*time.Second, what, func() bool { return clock.Waiting() > 0 })
}
