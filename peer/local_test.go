package peer_test

import (
	"context"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

func TestDisableAndEnable(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	h := install(t, site, site.Installer(nil, 0, week()).GetKey(), peer.InstallOptions{})
	id := h.id()
	h.start()
	h.waitStatus(id, "online")
	if err := peer.SetDisabled(h.dir, true, 1000); err != nil {
		t.Fatal(err)
	}
	h.d.Reload() // what SIGHUP does in `peer run`
	h.waitStatus(id, "disabled")
	if st, _ := peer.LocalStatus(h.dir); !st.Disabled {
		t.Fatal("local status not disabled")
	}
	if err := peer.SetDisabled(h.dir, false, 1000); err != nil {
		t.Fatal(err)
	}
	h.d.Reload()
	h.waitStatus(id, "online")

	// When the site restricts local disable/uninstall, only root may.
	if _, err := site.Admin.SetSettings(site.Ctx(), map[string]string{"restrict-local-uninstall": "true"}); err != nil {
		t.Fatal(err)
	}
	coordinatortest.Eventually(t, 10*time.Second, "the restriction reaching the peer", func() bool {
		return coordinatortest.WantNoPanic(func() error { return peer.SetDisabled(h.dir, true, 1000) }) == catalog.CodePermissionDenied
	})
	_, err := peer.Uninstall(context.Background(), h.dir, peer.UninstallOptions{EUID: 1000})
	coordinatortest.WantCode(t, err, catalog.CodePermissionDenied)
	if err := peer.SetDisabled(h.dir, true, 0); err != nil {
		t.Fatalf("root may still disable: %v", err)
	}
}

func TestLocalUninstallTellsTheCoordinator(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	key := site.Installer(nil, 0, week()).GetKey()
	kept := install(t, site, key, peer.InstallOptions{})
	keptID := kept.id()
	kept.start()
	kept.waitStatus(keptID, "online")
	kept.stop()
	told, err := peer.Uninstall(context.Background(), kept.dir, peer.UninstallOptions{EUID: 1000})
	if err != nil || !told {
		t.Fatalf("uninstall: told=%v err=%v", told, err)
	}
	kept.waitStatus(keptID, "uninstalled") // default: mark and keep

	if _, err := site.Admin.SetSettings(site.Ctx(), map[string]string{"uninstalled-behavior": "remove"}); err != nil {
		t.Fatal(err)
	}
	gone := install(t, site, key, peer.InstallOptions{})
	goneID := gone.id()
	gone.start()
	gone.waitStatus(goneID, "online")
	gone.stop()
	if told, err := peer.Uninstall(context.Background(), gone.dir, peer.UninstallOptions{EUID: 1000}); err != nil || !told {
		t.Fatalf("uninstall: told=%v err=%v", told, err)
	}
	coordinatortest.Eventually(t, 10*time.Second, "record removed", func() bool { return gone.status(goneID) == "" })

	// With the coordinator out of reach the host still uninstalls.
	late := install(t, site, key, peer.InstallOptions{})
	site.Stop()
	told, err = peer.Uninstall(context.Background(), late.dir, peer.UninstallOptions{EUID: 1000, Timeout: time.Second})
	if err != nil || told {
		t.Fatalf("uninstall with the coordinator down: told=%v err=%v", told, err)
	}
}

func TestEnrollmentRefusals(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	in := site.Installer(nil, 0, week())
	first := install(t, site, in.GetKey(), peer.InstallOptions{})
	first.start()
	first.waitStatus(first.id(), "online")

	// Build limits, with the seeds' messages.
	if _, err := site.Admin.SetSettings(site.Ctx(), map[string]string{"max-peers": "1"}); err != nil {
		t.Fatal(err)
	}
	second := install(t, site, in.GetKey(), peer.InstallOptions{})
	second.start()
	second.waitError(catalog.CodeBuildLimitTotal)
	second.stop()
	if _, err := site.Admin.SetSettings(site.Ctx(), map[string]string{"max-peers": "0", "max-active-peers": "1"}); err != nil {
		t.Fatal(err)
	}
	second.start()
	second.waitError(catalog.CodeBuildLimitActive)
	second.stop()

	// A revoked key is refused at first contact; a known peer is not affected.
	if err := site.Admin.DeleteInstaller(site.Ctx(), in.GetId()); err != nil {
		t.Fatal(err)
	}
	if _, err := site.Admin.SetSettings(site.Ctx(), map[string]string{"max-active-peers": "0"}); err != nil {
		t.Fatal(err)
	}
	second.start()
	second.waitError(catalog.CodeKeyRevoked)
	first.stop()
	first.start()
	first.waitStatus(first.id(), "online")
}

func (h *host) waitError(code catalog.Code) {
	h.t.Helper()
	coordinatortest.Eventually(h.t, 20*time.Second, "error "+string(code)+" at the peer", func() bool {
		st, err := peer.LocalStatus(h.dir)
		return err == nil && st.LastErrorCode == string(code)
	})
}

func TestRateLimitedReconnectsAfterCoordinatorRestart(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	key := site.Installer(nil, 0, week()).GetKey()
	if _, err := site.Admin.SetSettings(site.Ctx(), map[string]string{"connection-rate": "2"}); err != nil {
		t.Fatal(err)
	}
	const n = 6
	var hosts []*host
	for i := 0; i < n; i++ {
		h := install(t, site, key, peer.InstallOptions{})
		hosts = append(hosts, h)
	}
	for _, h := range hosts {
		h.start()
	}
	allOnline := func() bool {
		views, err := site.Admin.Peers(site.Ctx(), "status:online", false)
		return err == nil && len(views) == n
	}
	eventuallyTicking(t, site, 30*time.Second, "all peers online through the rate limit", allOnline)
	// Over the rate, some were told to retry rather than refused for good.
	if site.Coord.Service().PeerRetries() == 0 {
		t.Fatal("6 simultaneous peers at 2/s: none was told to retry")
	}
	site.Stop()
	coordinatortest.Eventually(t, 10*time.Second, "peers noticing", func() bool {
		st, _ := peer.LocalStatus(hosts[0].dir)
		return !st.Connected
	})
	site.Start()
	eventuallyTicking(t, site, 30*time.Second, "every peer back online after the restart", allOnline)
}

func TestTechniciansSeeOnlyTheirPeers(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	ann := site.User("ann", pb.Role_ROLE_TECHNICIAN)
	lead := site.User("lea", pb.Role_ROLE_TECHNICIAN)
	site.User("bob", pb.Role_ROLE_TECHNICIAN)
	if _, err := site.Admin.CreateGroup(ctx, "ops", "", []*pb.GroupMember{{User: "ann"}, {User: "lea", Role: pb.MemberRole_MEMBER_ROLE_TEAM_LEAD}}); err != nil {
		t.Fatal(err)
	}
	mk := func(group, name string) string {
		in := site.Installer(&pb.InstallerDefaults{Group: group, Name: name}, 0, week())
		h := install(t, site, in.GetKey(), peer.InstallOptions{})
		h.start()
		h.waitStatus(h.id(), "online")
		return h.id()
	}
	mk("user:ann", "ann-laptop")
	mk("user:bob", "bob-laptop")
	mk("jumpgroup:ops", "ops-server")
	names := func(c interface {
		Peers(context.Context, string, bool) ([]*pb.PeerView, error)
	}) []string {
		views, err := c.Peers(ctx, "", false)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, v := range views {
			out = append(out, v.GetPeer().GetSettings().GetName())
		}
		return out
	}
	if got := names(ann); len(got) != 2 || got[0] != "ann-laptop" || got[1] != "ops-server" {
		t.Fatalf("ann sees %v", got)
	}
	if got := names(lead); len(got) != 2 || got[0] != "ann-laptop" || got[1] != "ops-server" {
		t.Fatalf("the team lead sees %v (ann's list and the group)", got)
	}
	if got := names(site.Admin); len(got) != 3 {
		t.Fatalf("admin sees %v", got)
	}
	_, err := ann.Peer(ctx, "bob-laptop")
	coordinatortest.WantCode(t, err, catalog.CodePeerNotFound)
	_, err = ann.SetPeer(ctx, "ann-laptop", &pb.InstallerDefaults{Group: "user:bob"}, 1)
	coordinatortest.WantCode(t, err, catalog.CodePermissionDenied)
	if err := ann.RemovePeers(ctx, "bob-laptop"); catalog.CodeOf(err) != catalog.CodePeerNotFound {
		t.Fatalf("ann removed bob's peer: %v", err)
	}
	_, err = site.Admin.Peer(ctx, "laptop")
	coordinatortest.WantCode(t, err, catalog.CodePeerAmbiguous)
}
