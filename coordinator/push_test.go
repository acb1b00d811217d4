package coordinator_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// pushSite is a site whose coordinator runs with res, and an installer key.
func pushSite(t *testing.T, res coordinator.Resources) (*coordinatortest.Site[*console.Client], string) {
	t.Helper()
	site := coordinatortest.New(t, console.Login)
	site.Stop()
	site.Resources = res
	site.Start()
	return site, site.Installer(&pb.InstallerDefaults{}, 0, week).GetKey()
}

// stuckPeer is an enrolled peer that stops reading its stream. As a member
// it reports 200 KiB of host facts (a patched peer may: a member's hello
// may be 256 KiB), which every update the coordinator sends it carries
// back, so two updates fill its stream's receive window (yamux: 256 KiB)
// and the coordinator's next write to it blocks.
func stuckPeer(t *testing.T, site *coordinatortest.Site[*console.Client], key string) *rawPeer {
	t.Helper()
	p := newRawPeer(t, site).online(site, key, "stuck")
	p.ms.Reset()
	facts := &pb.PeerInfo{Hostname: "stuck", Os: strings.Repeat("x", 200<<10), Protocols: []string{string(channel.Protocol)}}
	if down := p.helloWith(site, &pb.PeerHello{InstallerKey: key, Info: facts}); down.GetWelcome() == nil {
		t.Fatalf("not welcomed again: %v", down)
	}
	return p // and it never reads again
}

// nextUpdate reads p's stream up to the next settings update, and returns
// its statistics interval.
func (p *rawPeer) nextUpdate() uint32 {
	p.t.Helper()
	for {
		var down pb.PeerDown
		if err := p.ms.Read(&down, 10*time.Second); err != nil {
			p.t.Fatalf("reading an update: %v", err)
		}
		if u := down.GetUpdate(); u != nil {
			return u.GetStatsIntervalSeconds()
		}
	}
}

func setStatsInterval(t *testing.T, site *coordinatortest.Site[*console.Client], seconds int) console.SettingsSet {
	t.Helper()
	r, err := site.Admin.SetSettingsTold(site.Ctx(), map[string]string{"stats-interval": fmt.Sprintf("%ds", seconds)})
	if err != nil {
		t.Fatalf("settings set stats-interval=%ds: %v", seconds, err) // before push.go: blocked on the stuck peer
	}
	return r
}

func status(t *testing.T, site *coordinatortest.Site[*console.Client], p *rawPeer) string {
	t.Helper()
	v, err := site.Admin.Peer(site.Ctx(), p.id().String())
	if err != nil {
		t.Fatal(err)
	}
	return v.GetStatus()
}

// Issue 12 #4: settings set answers at once with how many online peers it
// tells, while a peer that does not read holds its own queue only: the
// others get every change, and the stuck one the latest once it reads.
// Writes time out after an hour here, so a settings set that waited for
// the stuck peer would not answer within the test's 30 s; and one writer
// serves every queue, so the reading peers get their updates only because
// a write held up gives the writer's place away.
func TestStuckPeerHoldsUpNoOne(t *testing.T) {
	site, key := pushSite(t, coordinator.Resources{PeerWriteTimeout: time.Hour, PeerWriters: 1})
	good := []*rawPeer{newRawPeer(t, site).online(site, key, "good-1"), newRawPeer(t, site).online(site, key, "good-2")}
	stuck := stuckPeer(t, site, key)

	const sets = 6
	for i := range sets {
		if r := setStatsInterval(t, site, 30+i); r.PeersTold != 3 || r.Settings.GetStatsIntervalSeconds() != uint32(30+i) {
			t.Fatalf("settings set %d: told %d peers, settings %v; want 3", i, r.PeersTold, r.Settings)
		}
		for _, g := range good {
			if got := g.nextUpdate(); got != uint32(30+i) {
				t.Fatalf("a reading peer got stats interval %d, want %d", got, 30+i)
			}
		}
	}
	if s := status(t, site, stuck); s != "online" {
		t.Fatalf("the stuck peer is %s: it is disconnected only past its write timeout or a full queue", s)
	}
	// Reading again, it gets the latest settings, and fewer updates than
	// changes: those made while it was stuck were sent as one.
	n := 1
	for stuck.nextUpdate() != 30+sets-1 {
		n++
	}
	if n >= sets {
		t.Fatalf("the stuck peer got %d updates for %d changes", n, sets)
	}
}

// A peer whose send queue is full is disconnected (its messages are not
// dropped while it stays online); the others get every revocation.
func TestStuckPeerIsDisconnectedWhenItsQueueIsFull(t *testing.T) {
	site, key := pushSite(t, coordinator.Resources{PeerWriteTimeout: time.Hour, PeerSendQueue: 2})
	reader := newRawPeer(t, site).online(site, key, "reader")
	stuck := stuckPeer(t, site, key)
	for i := range 3 { // the stuck peer's window fills
		setStatsInterval(t, site, 30+i)
		reader.nextUpdate()
	}
	// Revocations do not coalesce: removing technicians queues one each.
	const removed = 4
	for i := range removed {
		name := fmt.Sprintf("tech-%d", i)
		site.User(name, pb.Role_ROLE_TECHNICIAN)
		if err := site.Admin.RemoveUser(site.Ctx(), name); err != nil {
			t.Fatal(err)
		}
	}
	coordinatortest.Eventually(t, 10*time.Second, "the stuck peer offline", func() bool { return status(t, site, stuck) == "offline" })
	if n := site.Coord.Service().SlowPeers(); n != 1 {
		t.Fatalf("%d slow peers disconnected, want 1", n)
	}
	for i := 0; i < removed; {
		var down pb.PeerDown
		if err := reader.ms.Read(&down, 10*time.Second); err != nil {
			t.Fatalf("the reading peer got %d revocations of %d: %v", i, removed, err)
		}
		if down.GetRevoke() != nil {
			i++
		}
	}
	if s := status(t, site, reader); s != "online" {
		t.Fatalf("the reading peer is %s", s)
	}
}

// Close waits for every send queue's writer, also one blocked on a peer
// that does not read (closing the host resets its stream).
func TestCloseWaitsForPushes(t *testing.T) {
	site, key := pushSite(t, coordinator.Resources{PeerWriteTimeout: time.Hour})
	stuckPeer(t, site, key)
	for i := range 3 {
		setStatsInterval(t, site, 30+i)
	}
	if site.Coord.Service().Pushing() == 0 {
		t.Fatal("no writer blocked on the stuck peer")
	}
	site.Stop()
	if n := site.Coord.Service().Pushing(); n != 0 {
		t.Fatalf("%d send queue writers still at work after Close", n)
	}
}
