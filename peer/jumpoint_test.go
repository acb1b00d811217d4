package peer_test

import (
	"crypto/rand"
	"encoding/json"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	lhost "github.com/libp2p/go-libp2p/core/host"
	lpeer "github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
	"github.com/libp2p/go-libp2p/p2p/protocol/ping"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
	"github.com/jumpmesh/jumpmesh/peer"
)

// testJumpoint is a host on the peer's network serving tunnels with an
// Authorize of the test's: it records every open and lets through only
// tunnels to the coordinator (what a jumpoint allows its peers).
type testJumpoint struct {
	h   lhost.Host
	srv *tunnel.Server

	mu    sync.Mutex
	opens []jumpointOpen
}

type jumpointOpen struct {
	remote       lpeer.ID
	target       string
	installerKey string
}

func newTestJumpoint(t *testing.T, coordinator string) *testJumpoint {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")}})
	if err != nil {
		t.Fatal(err)
	}
	j := &testJumpoint{h: h}
	j.srv = tunnel.Serve(h, tunnel.Config{Authorize: func(remote lpeer.ID, o *pb.TunnelOpen) error {
		j.mu.Lock()
		j.opens = append(j.opens, jumpointOpen{remote, o.GetTarget(), o.GetInstallerKey()})
		j.mu.Unlock()
		if o.GetTarget() != coordinator {
			return catalog.Errorf(catalog.CodePermissionDenied, "(only the coordinator)")
		}
		return nil
	}})
	t.Cleanup(j.close)
	return j
}

func (j *testJumpoint) close() {
	j.srv.Close()
	j.h.Close()
}

func (j *testJumpoint) seen() []jumpointOpen {
	j.mu.Lock()
	defer j.mu.Unlock()
	return append([]jumpointOpen(nil), j.opens...)
}

func (j *testJumpoint) config() peer.JumpointConfig {
	c := peer.JumpointConfig{ID: j.h.ID().String(), Name: "plant-" + j.h.ID().String()[len(j.h.ID().String())-4:]}
	for _, a := range j.h.Addrs() {
		c.Addrs = append(c.Addrs, a.String())
	}
	return c
}

// tcpTarget is the host:port of a multiaddr string like the site's address.
func tcpTarget(t *testing.T, addr string) string {
	t.Helper()
	transport, _ := lpeer.SplitAddr(ma.StringCast(addr))
	_, hostport, err := manet.DialArgs(transport)
	if err != nil {
		t.Fatal(err)
	}
	return hostport
}

// installBehind installs a peer whose config names the jumpoints, as a key
// naming them makes it (the key's copy into the config is
// TestNewConfigKeepsTheKeysJumpoints's).
func installBehind(t *testing.T, site *coordinatortest.Site[*console.Client], name string, js ...*testJumpoint) (*host, string) {
	t.Helper()
	key := site.Installer(&pb.InstallerDefaults{Name: name}, 0, week()).GetKey()
	h := install(t, site, key, peer.InstallOptions{})
	path := filepath.Join(h.dir, "config.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c peer.Config
	if err := json.Unmarshal(raw, &c); err != nil {
		t.Fatal(err)
	}
	for _, j := range js {
		c.Jumpoints = append(c.Jumpoints, j.config())
	}
	raw, _ = json.Marshal(&c)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return h, key
}

// TestPeerBehindJumpointReachesTheSiteOnlyThroughIt: a peer whose config
// names a jumpoint goes online with every connection to the coordinator
// tunnelled through it (the jumpoint saw the peer's opens, the first with
// the installer key, later ones, once enrolled, without), and its host
// cannot dial QUIC, which would bypass the jumpoint.
func TestPeerBehindJumpointReachesTheSiteOnlyThroughIt(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	coord := tcpTarget(t, site.Addr)
	j := newTestJumpoint(t, coord)
	h, key := installBehind(t, site, "plc-01", j)
	h.start()
	id := h.id()
	h.waitStatus(id, "online")

	opens := j.seen()
	if len(opens) == 0 || opens[0].remote.String() != id || opens[0].target != coord || opens[0].installerKey != key {
		t.Fatalf("jumpoint saw %+v, want the peer %s opening %s with its installer key first", opens, id, coord)
	}
	if j.srv.Stats().Open == 0 {
		t.Fatal("no tunnel open while the peer is online")
	}
	sw := peer.HostOf(h.d).Network().(*swarm.Swarm)
	if tr := sw.TransportForDialing(ma.StringCast("/ip4/127.0.0.1/udp/4001/quic-v1")); tr != nil {
		t.Fatalf("the peer's host dials QUIC (%T): it would bypass the jumpoint", tr)
	}
	for _, a := range peer.HostOf(h.d).Addrs() {
		if _, err := a.ValueForProtocol(ma.P_TCP); err != nil {
			t.Errorf("the peer listens on %s; a peer behind a jumpoint listens on TCP only", a)
		}
	}

	// Enrolled (welcomed), the peer's next session opens its tunnel
	// without the key.
	coordinatortest.Eventually(t, 10*time.Second, "welcomed", func() bool {
		st, err := peer.LoadState(h.dir)
		return err == nil && st.Contacted
	})
	before := len(j.seen())
	peer.HostOf(h.d).Network().ClosePeer(j.h.ID())
	eventuallyTicking(t, site, 20*time.Second, "a new tunnel", func() bool {
		o := j.seen()
		return len(o) > before && o[len(o)-1].target == coord && j.srv.Stats().Open > 0
	})
	if o := j.seen(); o[len(o)-1].installerKey != "" {
		t.Error("an enrolled peer still sends its installer key to the jumpoint")
	}
	for _, o := range j.seen() {
		if o.target != coord {
			t.Errorf("the peer asked the jumpoint for %s; it only needs the coordinator %s", o.target, coord)
		}
	}
}

// TestPeerFallsOverToTheNextJumpoint: a peer behind two jumpoints is online
// through the first; when the first goes away the peer's reconnect goes
// through the second.
func TestPeerFallsOverToTheNextJumpoint(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	coord := tcpTarget(t, site.Addr)
	j1, j2 := newTestJumpoint(t, coord), newTestJumpoint(t, coord)
	h, _ := installBehind(t, site, "plc-02", j1, j2)
	h.start()
	h.waitStatus(h.id(), "online")
	if len(j1.seen()) == 0 || len(j2.seen()) != 0 {
		t.Fatalf("opens: first jumpoint %d, second %d; want the first only", len(j1.seen()), len(j2.seen()))
	}
	j1.close()
	eventuallyTicking(t, site, 30*time.Second, "online through the second jumpoint", func() bool {
		return j2.srv.Stats().Open > 0 && len(j2.seen()) > 0 && j2.seen()[0].target == coord
	})
	h.waitStatus(h.id(), "online")
}

// TestPeerBehindJumpointNeedsTCP: a peer behind a jumpoint told to listen
// on QUIC only would be unreachable; it refuses to start.
func TestPeerBehindJumpointNeedsTCP(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	j := newTestJumpoint(t, tcpTarget(t, site.Addr))
	h, _ := installBehind(t, site, "plc-03", j)
	_, err := peer.Open(peer.RunConfig{Dir: h.dir, Listen: []string{"/ip4/127.0.0.1/udp/0/quic-v1"}})
	coordinatortest.WantCode(t, err, catalog.CodeInvalidArgument)
}

// TestPeerLeavesASilentJumpoint: a jumpoint whose connection stays up but
// that stops answering (here: its ping service gone, as a host that lost
// power answers nothing) is dropped by the peer's pings, and the peer's
// reconnect goes through the next jumpoint.
func TestPeerLeavesASilentJumpoint(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (harness_test.go)
	site := coordinatortest.New(t, console.Login)
	coord := tcpTarget(t, site.Addr)
	j1, j2 := newTestJumpoint(t, coord), newTestJumpoint(t, coord)
	h, _ := installBehind(t, site, "plc-04", j1, j2)
	h.start()
	h.waitStatus(h.id(), "online")
	j1.h.RemoveStreamHandler(ping.ID)
	eventuallyTicking(t, site, 30*time.Second, "online through the second jumpoint", func() bool {
		return j2.srv.Stats().Open > 0 && len(j2.seen()) > 0 && j2.seen()[0].target == coord
	})
}
