package peer_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	lphost "github.com/libp2p/go-libp2p/core/host"
	lpeer "github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/peer"
)

// setSiteConfig rewrites fields of the site's site.json (listen,
// public_addrs) and restarts its coordinator with them.
func setSiteConfig(t *testing.T, site *coordinatortest.Site[*console.Client], fields map[string]any) {
	t.Helper()
	path := filepath.Join(site.DataDir(), "site.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var sc map[string]any
	if err := json.Unmarshal(raw, &sc); err != nil {
		t.Fatal(err)
	}
	for k, v := range fields {
		sc[k] = v
	}
	if raw, err = json.Marshal(sc); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	site.Stop()
	site.Start()
}

func siteListen(t *testing.T, site *coordinatortest.Site[*console.Client]) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(site.DataDir(), "site.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sc struct {
		Listen []string `json:"listen"`
	}
	if err := json.Unmarshal(raw, &sc); err != nil {
		t.Fatal(err)
	}
	return sc.Listen
}

func learned(t *testing.T, dir string) []string {
	t.Helper()
	st, err := peer.LoadState(dir)
	if err != nil {
		t.Fatal(err)
	}
	return st.SiteAddrs
}

func tcpAddr(port int) string { return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port) }

// TestPeerFailsOverToALearnedCoordinator: a peer whose installer key names
// one coordinator address learns the site's others from its welcome,
// keeps them in state.json, and — restarted after the address of its key
// went away — comes online at a learned one. So does the administrator's
// console, from the addresses its answers carried.
func TestPeerFailsOverToALearnedCoordinator(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	listen := siteListen(t, site)
	first := listen[0] // the harness's TCP address
	second := tcpAddr(coordinatortest.FreePort(t, "tcp"))
	// The coordinator listens at both; its key and welcome name the first.
	setSiteConfig(t, site, map[string]any{"listen": append(slices.Clone(listen), second), "public_addrs": []string{first}})
	h := install(t, site, site.Installer(nil, 0, week()).GetKey(), peer.InstallOptions{})
	id := h.id()
	h.start()
	h.waitStatus(id, "online")
	coordinatortest.Eventually(t, 20*time.Second, "the welcome's address kept", func() bool { return slices.Equal(learned(t, h.dir), []string{first}) })
	// A second coordinator address appears (as a coordinator joins): the
	// welcome after the restart names both; the admin's answers too.
	setSiteConfig(t, site, map[string]any{"public_addrs": []string{first, second}})
	eventuallyTicking(t, site, 20*time.Second, "the peer learning both addresses", func() bool {
		return len(learned(t, h.dir)) == 2
	})
	h.waitStatus(id, "online")
	h.stop()
	// The first address goes away (its coordinator died): only the second
	// listens. The peer, restarted, has only the first in its key.
	setSiteConfig(t, site, map[string]any{"listen": []string{second}, "public_addrs": []string{second}})
	start := time.Now()
	h.start()
	got := h.waitStatus(id, "online")
	t.Logf("online through the learned address in %s", time.Since(start).Round(time.Millisecond))
	if got == nil {
		t.Fatal("not online")
	}
	coordinatortest.Eventually(t, 20*time.Second, "the new list kept", func() bool { return slices.Equal(learned(t, h.dir), []string{second}) })
	// The peer dials the key's address and the learned one.
	want := []string{first, second}
	var dials []string
	for _, a := range peer.CoordinatorOf(h.d).Addrs {
		dials = append(dials, a.String())
	}
	if !slices.Equal(dials, want) {
		t.Errorf("dials %v, want %v", dials, want)
	}
}

// silentListener accepts TCP connections and never says a word: a
// coordinator address where the machine is gone behind a firewall that
// drops, or a process hung. Closed at the end of the test.
func silentListener(t *testing.T) string { return coordinatortest.SilentListener(t).String() }

// impostor is a libp2p host with a key of its own listening on loopback:
// an address in a coordinator list that is not the site's.
func impostor(t *testing.T) string { return otherHost(t).Addrs()[0].String() }

// otherHost is a libp2p host of a key of its own on loopback TCP, closed at
// the end of the test.
func otherHost(t *testing.T) lphost.Host { return coordinatortest.LoopbackHost(t) }

// TestPeerDialsPastDeadCoordinatorAddresses: the installer key lists a
// silent address (accepts TCP, never answers), a refused one and another
// host's, before the live coordinator. The peer comes online through the
// live one without waiting for the others (libp2p dials them in
// parallel; the silent one would hold a sequential dial 30 s), and never
// takes the impostor for the site.
func TestPeerDialsPastDeadCoordinatorAddresses(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	live := siteListen(t, site)[0]
	refused := tcpAddr(coordinatortest.FreePort(t, "tcp"))
	fake := impostor(t)
	setSiteConfig(t, site, map[string]any{"public_addrs": []string{silentListener(t), refused, fake, live}})
	h := install(t, site, site.Installer(nil, 0, week()).GetKey(), peer.InstallOptions{})
	id := h.id()
	start := time.Now()
	h.start()
	h.waitStatus(id, "online")
	took := time.Since(start)
	t.Logf("online in %s with 3 dead addresses before the live one", took.Round(time.Millisecond))
	if took > 10*time.Second {
		t.Errorf("online after %s: a dead address held the dial", took)
	}
	// The peer's one connection to the site ID is the live coordinator's.
	siteID := peer.CoordinatorOf(h.d).ID
	for _, c := range peer.HostOf(h.d).Network().ConnsToPeer(siteID) {
		if !c.RemoteMultiaddr().Equal(ma.StringCast(live)) {
			t.Errorf("connected to the site at %s, want only %s", c.RemoteMultiaddr(), live)
		}
	}
}

// TestPeerKeepsOnlyTheSitesAddresses is the attack test of the list a
// welcome carries: addresses naming another peer ID, garbage and relayed
// addresses are dropped; a list with nothing usable (or an empty one)
// does not wipe the kept list; a list cut at mesh.MaxCoordinatorAddrs.
func TestPeerKeepsOnlyTheSitesAddresses(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	h := install(t, site, site.Installer(nil, 0, week()).GetKey(), peer.InstallOptions{})
	id := h.id()
	h.start()
	h.waitStatus(id, "online")
	coordinatortest.Eventually(t, 20*time.Second, "the welcome's addresses kept", func() bool { return len(learned(t, h.dir)) > 0 })
	kept := learned(t, h.dir)
	siteID := peer.CoordinatorOf(h.d).ID
	otherKey, _, _ := crypto.GenerateEd25519Key(nil)
	other, _ := lpeer.IDFromPrivateKey(otherKey)
	bytesOf := func(s string) []byte { return ma.StringCast(s).Bytes() }
	good := "/ip4/127.0.0.1/tcp/1"
	for _, c := range []struct {
		name string
		raw  [][]byte
		want []string
	}{
		{"empty", nil, kept},
		{"garbage", [][]byte{{0xff, 0xff}, {}, []byte("/ip4/1.2.3.4/tcp/5")}, kept},
		{"another peer ID", [][]byte{bytesOf(good + "/p2p/" + other.String())}, kept},
		{"through a relay", [][]byte{bytesOf(good + "/p2p/" + other.String() + "/p2p-circuit/p2p/" + siteID.String())}, kept},
		{"the site's among them", [][]byte{{0x01}, bytesOf("/ip4/10.9.9.9/tcp/4/p2p/" + other.String()), bytesOf(good + "/p2p/" + siteID.String())}, []string{good}},
	} {
		peer.LearnSiteAddrs(h.d, c.raw)
		if got := learned(t, h.dir); !slices.Equal(got, c.want) {
			t.Errorf("%s: kept %v, want %v", c.name, got, c.want)
		}
	}
	var many [][]byte
	for i := range mesh.MaxCoordinatorAddrs + 10 {
		many = append(many, bytesOf(fmt.Sprintf("/ip4/10.0.%d.%d/tcp/4830", i/256, i%256)))
	}
	peer.LearnSiteAddrs(h.d, many)
	if got := learned(t, h.dir); len(got) != mesh.MaxCoordinatorAddrs {
		t.Errorf("kept %d of %d addresses, want %d", len(got), len(many), mesh.MaxCoordinatorAddrs)
	}
	// A state file edited by the peer's user: what names another ID is
	// not dialled.
	h.stop()
	st, _ := peer.LoadState(h.dir)
	st.SiteAddrs = []string{"/ip4/10.1.1.1/tcp/1/p2p/" + other.String(), "not an address", good}
	raw, _ := json.Marshal(st)
	stateDir := filepath.Join(h.dir, "var")
	if _, err := os.Stat(stateDir); err != nil {
		stateDir = h.dir
	}
	if err := os.WriteFile(filepath.Join(stateDir, "state.json"), raw, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := peer.Open(peer.RunConfig{Dir: h.dir, Clock: site.Clock})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, a := range peer.CoordinatorOf(d).Addrs {
		if s := a.String(); s == "/ip4/10.1.1.1/tcp/1" {
			t.Errorf("dials %s, an address the state file gave another peer ID", s)
		}
	}
}
