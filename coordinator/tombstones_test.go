package coordinator_test

import (
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// listed reports whether ls (--all: with peers removed and not yet told)
// shows id.
func listed(t *testing.T, site *coordinatortest.Site[*console.Client], id peer.ID, all bool) bool {
	t.Helper()
	views, err := site.Admin.Peers(site.Ctx(), "", all)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range views {
		if peer.ID(v.GetPeer().GetId()) == id {
			return true
		}
	}
	return false
}

// helloUninstall says hello again and wants to be told to uninstall.
func helloUninstall(t *testing.T, site *coordinatortest.Site[*console.Client], p *rawPeer, key string) {
	t.Helper()
	down := p.hello(site, key, "web-01")
	if down.GetUninstall() == nil {
		t.Fatalf("hello after rm answered %v, want an uninstall order", down)
	}
	p.ms.Reset()
	if listed(t, site, p.id(), false) {
		t.Fatal("a removed peer is listed again after its hello")
	}
	coordinatortest.Eventually(t, 10*time.Second, "no record left, even for ls --all", func() bool { return !listed(t, site, p.id(), true) })
}

// Finding 11: rm is sticky. A peer removed while offline (or online) is
// told to uninstall at every hello after, and never listed again, until its
// installer key is of no use.
func TestRemovedPeerStaysRemoved(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	ctx := site.Ctx()
	key := site.Installer(&pb.InstallerDefaults{Name: "web-01"}, 0, week).GetKey()

	offline := newRawPeer(t, site).online(site, key, "web-01")
	offline.ms.Reset()
	coordinatortest.Eventually(t, 10*time.Second, "peer offline", func() bool {
		v, err := site.Admin.Peer(ctx, offline.id().String())
		return err == nil && v.GetStatus() == "offline"
	})
	if err := site.Admin.RemovePeers(ctx, offline.id().String()); err != nil {
		t.Fatal(err)
	}
	helloUninstall(t, site, offline, key)
	helloUninstall(t, site, offline, key)

	online := newRawPeer(t, site).online(site, key, "web-02")
	if err := site.Admin.RemovePeers(ctx, online.id().String()); err != nil {
		t.Fatal(err)
	}
	var down pb.PeerDown
	if err := online.ms.Read(&down, 10*time.Second); err != nil || down.GetUninstall() == nil {
		t.Fatalf("online peer got %v, %v; want an uninstall order", &down, err)
	}
	online.ms.Reset()
	helloUninstall(t, site, online, key)

	// A restart keeps them removed.
	site.Stop()
	site.Start()
	helloUninstall(t, site, offline, key)

	// Past the delete horizon (which is past the key's validity), the
	// tombstone goes: the key no longer enrolls anyone.
	site.Clock.Advance(181 * 24 * time.Hour)
	site.Coord.Service().Sweep(site.Clock.Now())
	down2 := offline.hello(site, key, "web-01")
	if down2.GetError() == nil || catalog.Code(down2.GetError().GetCode()) != catalog.CodeKeyExpired {
		t.Fatalf("hello with an expired key answered %v, want key_expired", down2)
	}
}
