package coordinator_test

import (
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

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
	// A knows B's peer once its watch brings B's commit. Held here, A's
	// lookup waits for the watch (TestLookupWaitsForTheWatchToCatchUp)
	// for 1 s, then answers that the peer does not exist, as it would
	// have a moment before the peer enrolled (statusOf waits through
	// that; it failed one run in five on a loaded machine when a poll
	// met it).
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

// A peer enrolled through another coordinator a moment ago is found by
// name and by ID, though this coordinator's watch has not brought its
// record yet: two coordinators of a site on one etcd, A's watch held, a
// peer enrolled through B; the technician asks A. A's lookup misses, waits
// for its watch to catch up with the store (the hook lets the watch go
// once A is waiting), and finds the peer. Without the wait A answers "no
// such peer" for a peer the site has.
func TestLookupWaitsForTheWatchToCatchUp(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	h := newHASite(t)
	_, _, atB := h.another("b", 10*time.Second)
	key := h.Installer(&pb.InstallerDefaults{}, 0, week).GetKey()
	admin, ctx := h.Admin, h.Ctx()

	var mu sync.Mutex
	var release func()
	waited := 0
	h.Coord.OnCatchUpWaitForTest(func() {
		mu.Lock()
		defer mu.Unlock()
		waited++
		if release != nil {
			release()
		}
	})
	hold := func() {
		mu.Lock()
		defer mu.Unlock()
		release = h.Coord.HoldWatchForTest()
		t.Cleanup(release)
	}

	hold()
	named := listeningPeer(t).online(atB, key, "web-07")
	v, err := admin.Peer(ctx, "web-07")
	if err != nil {
		t.Fatalf("A asked by name for B's new peer: %v", err)
	}
	if got := peer.ID(v.GetPeer().GetId()); got != named.id() {
		t.Fatalf("A found %s by name, want %s", got, named.id())
	}

	hold()
	byID := listeningPeer(t).online(atB, key, "web-08")
	if v, err = admin.Peer(ctx, byID.id().String()); err != nil {
		t.Fatalf("A asked by ID for B's new peer: %v", err)
	}
	if name := v.GetPeer().GetSettings().GetName(); name != "web-08" {
		t.Fatalf("A found B's peer by ID named %q, want web-08", name)
	}
	mu.Lock()
	defer mu.Unlock()
	if waited == 0 {
		t.Fatal("A's lookups never waited for the watch: the test did not hold A behind the store")
	}

	// A name nobody has is still not found, once the watch has caught up.
	if _, err := admin.Peer(ctx, "web-99"); catalog.CodeOf(err) != catalog.CodePeerNotFound {
		t.Fatalf("A asked for a peer nobody enrolled: %v, want %s", err, catalog.CodePeerNotFound)
	}
}
