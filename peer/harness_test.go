package peer_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

// The slowest tests (a site and peers of their own in temp dirs, on ports
// chosen free, most of their time spent waiting on reconnects, leases and
// timeouts) run in parallel with each other (t.Parallel, after the others,
// at most go test's -parallel at once); the goroutine checks of the
// sequential tests (goleak) are done before they start. A test whose check
// depends on how fast hellos arrive (TestRateLimitedReconnectsAfterCoordinatorRestart)
// stays sequential.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// fastBackoff keeps reconnects quick in tests.
var fastBackoff = peer.Backoff{Base: 20 * time.Millisecond, Max: 200 * time.Millisecond}

// host is one installed peer, possibly running.
type host struct {
	t    *testing.T
	site *coordinatortest.Site[*console.Client]
	dir  string
	d    *peer.Daemon
	// backoff is the daemon's reconnect policy (zero: fastBackoff).
	backoff peer.Backoff
	cancel  context.CancelFunc
	done    chan error
}

// install installs a peer from key into a new directory of the test.
func install(t *testing.T, site *coordinatortest.Site[*console.Client], key string, opts peer.InstallOptions) *host {
	t.Helper()
	opts.Key = key
	if opts.Dir == "" {
		opts.Dir = filepath.Join(t.TempDir(), "jumpmesh")
	}
	opts.Binary = os.Args[0]
	opts.Clock = site.Clock
	if opts.EUID == nil {
		uid := 1000
		opts.EUID = &uid
	}
	if _, err := peer.Install(opts); err != nil {
		t.Fatalf("install: %v", err)
	}
	return &host{t: t, site: site, dir: opts.Dir}
}

// start runs the peer's daemon until stop.
func (h *host) start() {
	h.t.Helper()
	var log *slog.Logger
	if os.Getenv("JM_TEST_LOG") != "" { // debugging aid: the daemon's log on stderr
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	backoff := h.backoff
	if backoff == (peer.Backoff{}) {
		backoff = fastBackoff
	}
	d, err := peer.Open(peer.RunConfig{Dir: h.dir, Version: "test", Clock: h.site.Clock, Backoff: backoff, Logger: log})
	if err != nil {
		h.t.Fatalf("open peer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.d, h.cancel, h.done = d, cancel, make(chan error, 1)
	go func() { h.done <- d.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

// stop ends the daemon and returns what Run returned.
func (h *host) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	<-h.done
	h.d.Close()
	h.cancel = nil
}

// waitUninstalled waits for Run to end with ErrUninstalled and checks that
// the directory is gone.
func (h *host) waitUninstalled() {
	h.t.Helper()
	select {
	case err := <-h.done:
		if !errors.Is(err, peer.ErrUninstalled) {
			h.t.Fatalf("Run returned %v, want ErrUninstalled", err)
		}
		h.d.Close()
		h.cancel()
		h.cancel = nil
	case <-time.After(20 * time.Second):
		h.t.Fatal("peer did not uninstall itself")
	}
	if _, err := os.Stat(h.dir); !os.IsNotExist(err) {
		h.t.Fatalf("install dir still there: %v", err)
	}
}

func (h *host) id() string {
	st, err := peer.LocalStatus(h.dir)
	if err != nil {
		h.t.Fatal(err)
	}
	return st.PeerID
}

// status is the peer's status as the admin sees it ("" if not listed).
func (h *host) status(id string) string {
	views, err := h.site.Admin.Peers(h.site.Ctx(), "id:"+id, true)
	if err != nil || len(views) != 1 {
		return ""
	}
	return views[0].GetStatus()
}

func (h *host) waitStatus(id, want string) *pb.PeerView {
	h.t.Helper()
	var got *pb.PeerView
	coordinatortest.Eventually(h.t, 20*time.Second, "peer "+want, func() bool {
		views, err := h.site.Admin.Peers(h.site.Ctx(), "id:"+id, true)
		if err == nil && len(views) == 1 && views[0].GetStatus() == want {
			got = views[0]
			return true
		}
		return false
	})
	return got
}

func week() time.Duration { return 7 * 24 * time.Hour }

// eventuallyTicking is coordinatortest.Eventually for peers that reconnect:
// a peer waits on the site's manual clock, so between polls the clock moves
// by the backoff's ceiling whenever a timer waits on it.
func eventuallyTicking(t *testing.T, site *coordinatortest.Site[*console.Client], timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	coordinatortest.Eventually(t, timeout, what, func() bool {
		if cond() {
			return true
		}
		if site.Clock.Waiting() > 0 {
			site.Clock.Advance(fastBackoff.Max)
		}
		return false
	})
}
