package coordinator_test

import (
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// nextDown reads p's stream up to the next message that want takes.
func (p *rawPeer) nextDown(want func(*pb.PeerDown) bool) *pb.PeerDown {
	p.t.Helper()
	for {
		var down pb.PeerDown
		if err := p.ms.Read(&down, 10*time.Second); err != nil {
			p.t.Fatalf("reading the coordinator's next message: %v", err)
		}
		if want(&down) {
			return &down
		}
	}
}

// named takes an update that names the peer name.
func named(name string) func(*pb.PeerDown) bool {
	return func(d *pb.PeerDown) bool { return d.GetUpdate().GetPeer().GetSettings().GetName() == name }
}

// A peer set or removed through a coordinator that does not hold the peer
// reaches it: two coordinators of a site on one etcd, a real peer held by
// B, the administrator on A. A peer set through A: the peer gets an
// update with its new settings. Removed through A: B orders it to
// uninstall and leaves its tombstone; A shows it gone, and its next hello
// is told to uninstall. The delays are logged (docs/etcd.md).
// TestFollowPeersPushesOnlyChanges (internal) checks what is not pushed.
func TestPeerSetAndRemovedThroughAnotherCoordinator(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	h := newHASite(t)
	_, _, atB := h.another("b", 10*time.Second)
	key := h.Installer(&pb.InstallerDefaults{}, 0, week).GetKey()
	// A knows B's peer once its watch brings B's commit: until then it
	// answers that the peer does not exist, as it would have a moment
	// before the peer enrolled. Held here, that moment is the test's own
	// (statusOf waits through it; it failed one run in five on a loaded
	// machine when a poll met it).
	release := h.Coord.HoldWatchForTest()
	t.Cleanup(release)
	p := listeningPeer(t).online(atB, key, "web-01")
	admin, ctx := h.Admin, h.Ctx()
	if st := statusOf(t, admin, p.id()); st != "" {
		t.Fatalf("A shows B's peer %s before its watch brought it", st)
	}
	release()
	start := time.Now()
	coordinatortest.Eventually(t, 10*time.Second, "A knows B's peer", func() bool { return statusOf(t, admin, p.id()) == coordinator.StatusOnline })
	t.Logf("A showed B's peer online %s after its watch was let go", time.Since(start).Round(100*time.Microsecond))

	start = time.Now()
	if _, err := admin.SetPeer(ctx, p.id().String(), &pb.InstallerDefaults{Name: "web-02", Tag: "moved"}, uint32(installerkey.FieldName|installerkey.FieldTag)); err != nil {
		t.Fatal(err)
	}
	down := p.nextDown(named("web-02"))
	t.Logf("peer set through A: B's peer had its update %s after the set returned", time.Since(start).Round(100*time.Microsecond))
	if tag := down.GetUpdate().GetPeer().GetSettings().GetTag(); tag != "moved" {
		t.Fatalf("B's peer was sent tag %q, want moved", tag)
	}

	start = time.Now()
	if err := admin.RemovePeers(ctx, p.id().String()); err != nil {
		t.Fatal(err)
	}
	down = p.nextDown(func(d *pb.PeerDown) bool { return d.GetUninstall() != nil })
	t.Logf("peer removed through A: B's peer told to uninstall %s after the removal returned", time.Since(start).Round(100*time.Microsecond))
	if r := down.GetUninstall().GetReason(); r != "deleted by admin" {
		t.Fatalf("B's peer was told to uninstall: %q", r)
	}
	coordinatortest.Eventually(t, 10*time.Second, "the peer gone on A", func() bool {
		_, err := admin.Peer(ctx, p.id().String())
		return catalog.CodeOf(err) == catalog.CodePeerNotFound
	})
	if down := p.hello(h.Site, key, "web-01"); down.GetUninstall() == nil {
		t.Fatalf("the removed peer's hello to A: %v, want the order to uninstall", down)
	}
}
