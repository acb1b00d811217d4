package peer_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	lpeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/dht"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/peer"
)

// TestLyingRelayCannotMisleadAPeer: the relay a peer asks for the site
// (coorddht.go) is compromised, or the host's user wrote its own into
// state.json: a DHT server of the site's protocol that answers a lookup of
// the site with an impostor's address (another host's ID) and a silent
// one. With its coordinator down, the peer asks it, dials what it
// answered — and takes neither for the site (the handshake checks the
// site's ID), keeps the coordinator addresses it knew, and comes online
// there as soon as the coordinator is back.
func TestLyingRelayCannotMisleadAPeer(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (harness_test.go)
	site := coordinatortest.New(t, console.Login)
	h := onlinePeer(t, site, &pb.InstallerDefaults{Name: "misled"})
	siteID := peer.CoordinatorOf(h.d).ID
	var known []string
	coordinatortest.Eventually(t, 20*time.Second, "the welcome's coordinator addresses kept", func() bool {
		known = learned(t, h.dir)
		return len(known) > 0
	})

	liar := otherHost(t)
	node, err := dht.New(liar, dht.Config{Site: siteID, Infra: func(lpeer.ID) bool { return false }, Member: func(lpeer.ID) bool { return true }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { node.Close() })
	lies := []string{impostor(t), silentListener(t)}
	for _, a := range lies {
		liar.Peerstore().AddAddrs(siteID, []ma.Multiaddr{ma.StringCast(a)}, peerstore.PermanentAddrTTL)
	}

	h.stop()
	writeState(t, h.dir, func(s map[string]any) {
		s["relay_addrs"] = []string{liar.Addrs()[0].String() + "/p2p/" + liar.ID().String()}
	})
	site.Stop()
	h.start()
	eventuallyTicking(t, site, 30*time.Second, "the peer dialing what the liar answered", func() bool {
		var dials []string
		for _, a := range peer.CoordinatorOf(h.d).Addrs {
			dials = append(dials, a.String())
		}
		return slices.Contains(dials, lies[0]) && slices.Contains(dials, lies[1])
	})
	if conns := peer.HostOf(h.d).Network().ConnsToPeer(siteID); len(conns) > 0 {
		t.Fatalf("the peer holds a connection to the site's ID at %s with the coordinator down", conns[0].RemoteMultiaddr())
	}
	if got := learned(t, h.dir); !slices.Equal(got, known) {
		t.Fatalf("the coordinator addresses kept changed from %v to %v", known, got)
	}
	site.Start()
	eventuallyTicking(t, site, 30*time.Second, "the peer online at its coordinator again", func() bool {
		views, err := site.Admin.Peers(site.Ctx(), "id:"+h.id(), true)
		return err == nil && len(views) == 1 && views[0].GetStatus() == "online"
	})
}

// writeState changes fields of the peer's state.json as its host's user
// could.
func writeState(t *testing.T, dir string, change func(map[string]any)) {
	t.Helper()
	path := filepath.Join(dir, "var", "state.json")
	if _, err := os.Stat(path); err != nil {
		path = filepath.Join(dir, "state.json")
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var s map[string]any
	if err := json.Unmarshal(raw, &s); err != nil {
		t.Fatal(err)
	}
	change(s)
	if raw, err = json.Marshal(s); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
}
