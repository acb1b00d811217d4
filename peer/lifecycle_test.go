package peer_test

import (
	"os"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/installerkey"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

func TestEnrollReportAndDelete(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	in := site.Installer(&pb.InstallerDefaults{Tag: "linux", Comments: "rack 4"}, uint32(installerkey.FieldName), week())
	h := install(t, site, in.GetKey(), peer.InstallOptions{Overrides: peer.Overrides{Name: "web-01"}, OverrideFields: installerkey.FieldName})
	id := h.id()
	h.start()
	v := h.waitStatus(id, "online")
	p := v.GetPeer()
	if p.GetSettings().GetName() != "web-01" || p.GetSettings().GetTag() != "linux" || p.GetInstallerId() != in.GetId() {
		t.Fatalf("settings = %v", p.GetSettings())
	}
	host, _ := os.Hostname()
	if p.GetInfo().GetHostname() != host || p.GetInfo().GetVersion() != "test" || p.GetPublicAddr() != "127.0.0.1" {
		t.Fatalf("info = %v, public %q", p.GetInfo(), p.GetPublicAddr())
	}
	coordinatortest.Eventually(t, 10*time.Second, "statistics", func() bool {
		v, err := site.Admin.Peer(site.Ctx(), "web-01")
		return err == nil && v.GetPeer().GetStats().GetDiskTotalBytes() > 0
	})
	st, err := peer.LocalStatus(h.dir)
	if err != nil || !st.Contacted || st.Name != "web-01" {
		t.Fatalf("local status %+v %v", st, err)
	}

	// Technicians edit it; the peer learns its new name.
	tag := &pb.InstallerDefaults{Name: "web-01a", Tag: "prod"}
	if _, err := site.Admin.SetPeer(site.Ctx(), "web-01", tag, uint32(installerkey.FieldName|installerkey.FieldTag)); err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 10*time.Second, "new name at the peer", func() bool {
		st, err := peer.LocalStatus(h.dir)
		return err == nil && st.Name == "web-01a"
	})

	// Deleting an online peer makes it uninstall itself at once.
	if err := site.Admin.RemovePeers(site.Ctx(), "web-01a"); err != nil {
		t.Fatal(err)
	}
	h.waitUninstalled()
	if s := h.status(id); s != "" {
		t.Fatalf("deleted peer still listed as %s", s)
	}
}

func TestOfflineLostAndDeletedOnTheClock(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	in := site.Installer(nil, 0, week())
	h := install(t, site, in.GetKey(), peer.InstallOptions{})
	id := h.id()
	h.start()
	h.waitStatus(id, "online")
	h.stop()
	h.waitStatus(id, "offline")

	// Lost is a label after the lost horizon (30 days by default)...
	site.Clock.Advance(30 * 24 * time.Hour)
	h.waitStatus(id, "lost")
	if n := site.Coord.Service().Sweep(site.Clock.Now()); n != 0 {
		t.Fatalf("swept %d peers before the delete horizon", n)
	}
	// ... deletion happens at the delete horizon (180 days).
	site.Clock.Advance(150 * 24 * time.Hour)
	if n := site.Coord.Service().Sweep(site.Clock.Now()); n != 1 {
		t.Fatalf("swept %d peers at the delete horizon, want 1", n)
	}
	if s := h.status(id); s != "" {
		t.Fatalf("peer still listed as %s", s)
	}
	// The peer knows the horizon too: out of touch that long, it uninstalls
	// itself even though it never hears from the coordinator again.
	site.Stop()
	h.start()
	h.waitUninstalled()
}

func TestEphemeralPeerIsDeletedFiveMinutesAfterGoingOffline(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	in := site.Installer(&pb.InstallerDefaults{Ephemeral: true}, 0, week())
	h := install(t, site, in.GetKey(), peer.InstallOptions{})
	id := h.id()
	h.start()
	h.waitStatus(id, "online")
	h.stop()
	h.waitStatus(id, "offline")
	site.Clock.Advance(4 * time.Minute)
	if n := site.Coord.Service().Sweep(site.Clock.Now()); n != 0 {
		t.Fatal("ephemeral peer deleted before 5 minutes")
	}
	site.Clock.Advance(time.Minute)
	if n := site.Coord.Service().Sweep(site.Clock.Now()); n != 1 {
		t.Fatal("ephemeral peer not deleted after 5 minutes")
	}
}

func TestNeverContactedPeerUninstallsAtKeyExpiry(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	in := site.Installer(nil, 0, time.Hour)
	h := install(t, site, in.GetKey(), peer.InstallOptions{})
	// The peer checks the key's end after each reconnect wait, on its
	// clock: an hour of the manual clock, no wall time.
	h.backoff = peer.Backoff{Base: time.Hour, Max: time.Hour}
	site.Stop() // the coordinator is out of reach from the start
	h.start()
	coordinatortest.Eventually(t, 10*time.Second, "a recorded connection error", func() bool {
		st, err := peer.LocalStatus(h.dir)
		return err == nil && st.LastErrorCode == string(catalog.CodeCoordinatorDown)
	})
	waitClockTimer(t, site.Clock, "the reconnect wait")
	site.Clock.Advance(time.Hour)
	h.waitUninstalled()
}

func TestDeletedWhileOfflineUninstallsAtNextContact(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	in := site.Installer(nil, 0, week())
	h := install(t, site, in.GetKey(), peer.InstallOptions{})
	id := h.id()
	h.start()
	h.waitStatus(id, "online")
	h.stop()
	h.waitStatus(id, "offline")
	if err := site.Admin.RemovePeers(site.Ctx(), id); err != nil {
		t.Fatal(err)
	}
	if s := h.status(id); s != "deleted" {
		t.Fatalf("status %q, want deleted (listed with --deleted)", s)
	}
	h.start()
	h.waitUninstalled()
	coordinatortest.Eventually(t, 10*time.Second, "record removed", func() bool { return h.status(id) == "" })
}
