package jumpoint

import (
	"context"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

// These tests run the jumpoint's serving half (its host, the tunnel
// server, authorize and the refusals counter) with a hand-built ACL and
// no coordinator; jumpoint_test.go runs the whole daemon against one.

const echoProto protocol.ID = "/jumpmesh-test/echo"

func newKey(t testing.TB) crypto.PrivKey {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func newTestHost(t testing.TB, cfg mesh.HostConfig) host.Host {
	t.Helper()
	if cfg.Key == nil {
		cfg.Key = newKey(t)
	}
	h, err := mesh.NewHost(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	h.SetStreamHandler(echoProto, func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, s)
	})
	return h
}

func loopbackTCP() []ma.Multiaddr { return []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")} }

// echoServer accepts TCP connections on loopback and echoes them.
func echoServer(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { l.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_, _ = io.Copy(c, c)
			})
		}
	})
	return l.Addr().String()
}

// serving is a jumpoint's serving half with acl in force. Its refresher
// only swaps the same ACL in again, so unknown callers wait for nothing.
func serving(t testing.TB, site peer.ID, acl *ACL) *Jumpoint {
	t.Helper()
	j := &Jumpoint{res: DefaultResources(), log: slog.New(slog.DiscardHandler), clock: mesh.SystemClock{},
		site: peer.AddrInfo{ID: site}, stale: make(chan struct{}, 1), swapped: make(chan struct{})}
	j.ctx, j.cancel = context.WithCancel(context.Background())
	j.host = newTestHost(t, mesh.HostConfig{ListenAddrs: loopbackTCP()})
	j.acl.Store(acl)
	j.tunnels = tunnel.Serve(j.host, tunnel.Config{Authorize: j.authorize, MaxTunnels: j.res.MaxTunnels, DialTimeout: j.res.DialTimeout})
	j.registerMetrics(prometheus.NewRegistry())
	j.wg.Go(func() {
		for {
			select {
			case <-j.ctx.Done():
				return
			case <-j.stale:
				j.signalSwap()
			}
		}
	})
	t.Cleanup(func() {
		if err := j.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return j
}

func testACL(site peer.ID, siteAddrs []string, technicians, peers []peer.ID) *ACL {
	a := &ACL{Name: "test", Technicians: map[peer.ID]struct{}{}, Peers: map[peer.ID]struct{}{},
		SiteTargets: map[string]struct{}{}, CoordinatorTargets: map[string]struct{}{}}
	for _, p := range technicians {
		a.Technicians[p] = struct{}{}
	}
	for _, p := range peers {
		a.Peers[p] = struct{}{}
	}
	for i, s := range siteAddrs {
		a.SiteTargets[s] = struct{}{}
		if i == 0 {
			a.CoordinatorTargets[s] = struct{}{}
		}
	}
	return a
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond every 10 ms for up to 10 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(10 * time.Second)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("timed out waiting: %s", what)
		}
	}
}

func connect(t testing.TB, from host.Host, to host.Host) {
	t.Helper()
	if err := from.Connect(ctxT(t), peer.AddrInfo{ID: to.ID(), Addrs: to.Addrs()}); err != nil {
		t.Fatal(err)
	}
}

// TestServePeerToSiteAndRefuseStranger: a peer in the ACL gets a tunnel to
// a site address (here a loopback echo server) that carries bytes both
// ways; the same peer is refused another target, a stranger is refused
// everything, and each refusal is counted under its reason.
func TestServePeerToSiteAndRefuseStranger(t *testing.T) {
	site := newTestHost(t, mesh.HostConfig{}).ID()
	echo, other := echoServer(t), echoServer(t)
	p := newTestHost(t, mesh.HostConfig{})
	j := serving(t, site, testACL(site, []string{echo}, nil, []peer.ID{p.ID()}))
	connect(t, p, j.host)

	c, err := tunnel.Dial(ctxT(t), p, j.ID(), &pb.TunnelOpen{Target: echo})
	if err != nil {
		t.Fatalf("allowed tunnel: %v", err)
	}
	msg := []byte("through the jumpoint")
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != string(msg) {
		t.Fatalf("echo: %q %v", got, err)
	}
	c.Close()

	_, err = tunnel.Dial(ctxT(t), p, j.ID(), &pb.TunnelOpen{Target: other})
	wantRefused(t, j, err, catalog.CodePermissionDenied, ReasonPeerTarget)

	x := newTestHost(t, mesh.HostConfig{})
	connect(t, x, j.host)
	for _, target := range []string{echo, other} {
		_, err = tunnel.Dial(ctxT(t), x, j.ID(), &pb.TunnelOpen{Target: target})
		wantRefused(t, j, err, catalog.CodePermissionDenied, ReasonStranger)
	}
	if n := testutil.ToFloat64(j.refused.WithLabelValues(ReasonStranger)); n != 2 {
		t.Errorf("stranger refusals %v, want 2", n)
	}
	if st := j.Stats(); st.GetTunnelsTotal() != 1 || st.GetRefusedTotal() != 3 || st.GetBytesTotal() < uint64(2*len(msg)) {
		t.Errorf("stats %v", st)
	}
}

func wantRefused(t testing.TB, j *Jumpoint, err error, code catalog.Code, reason string) {
	t.Helper()
	if catalog.CodeOf(err) != code {
		t.Fatalf("got %v (code %q), want code %q", err, catalog.CodeOf(err), code)
	}
	if testutil.ToFloat64(j.refused.WithLabelValues(reason)) == 0 {
		t.Errorf("refusal not counted under %s", reason)
	}
}

// TestServeTechnicianToPeerEndToEnd: a console host whose TCP dialer is a
// tunnel.Dialer reaches a peer behind the jumpoint with a grant, over the
// jumpoint, secured end to end (a libp2p connection to the peer's ID); the
// targets the jumpoint allows are the peer's listen addresses at the IP its
// connection comes from, as the jumpoint learned them by identify. A
// grant for another technician and a target beside the peer are refused.
func TestServeTechnicianToPeerEndToEnd(t *testing.T) {
	siteKey := newKey(t)
	siteSigner, err := mesh.NewKeySigner(siteKey)
	if err != nil {
		t.Fatal(err)
	}
	site := siteSigner.PeerID()
	behind := newTestHost(t, mesh.HostConfig{ListenAddrs: loopbackTCP()})
	techKey := newKey(t)
	techID, _ := peer.IDFromPrivateKey(techKey)
	j := serving(t, site, testACL(site, []string{"127.0.0.1:1"}, []peer.ID{techID}, []peer.ID{behind.ID()}))
	connect(t, behind, j.host)
	// The jumpoint knows where the peer listens once identify has run.
	eventually(t, "the jumpoint learns where the peer listens", func() bool { return len(hostPeerAddrs(j.host)(behind.ID())) > 0 })

	now := time.Now()
	g, err := grant.Sign(&pb.JumpGrantBody{SiteId: []byte(site), Technician: []byte(techID), Peer: []byte(behind.ID()),
		Capabilities: grant.All, IssuedUnix: now.Unix(), ExpiresUnix: now.Add(grant.MaxLifetime).Unix()}, siteSigner)
	if err != nil {
		t.Fatal(err)
	}
	jaddrs := map[string]bool{}
	for _, a := range j.host.Addrs() {
		if _, s, err := manet.DialArgs(a); err == nil {
			jaddrs[s] = true
		}
	}
	d := tunnel.NewDialer(func(address string) ([]peer.ID, *pb.TunnelOpen, bool) {
		if jaddrs[address] {
			return nil, nil, false
		}
		return []peer.ID{j.ID()}, &pb.TunnelOpen{Grant: g}, true
	})
	console := newTestHost(t, mesh.HostConfig{Key: techKey, TCPDialer: d.ForAddr})
	d.SetHost(console)
	connect(t, console, j.host)
	var tcp []ma.Multiaddr
	for _, a := range behind.Addrs() {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			tcp = append(tcp, a)
		}
	}
	if err := console.Connect(ctxT(t), peer.AddrInfo{ID: behind.ID(), Addrs: tcp}); err != nil {
		t.Fatalf("console to the peer through the jumpoint: %v", err)
	}
	s, err := console.NewStream(ctxT(t), behind.ID(), echoProto)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	if b, err := io.ReadAll(s); err != nil || string(b) != "ping" {
		t.Fatalf("echo over the tunnel: %q %v", b, err)
	}
	if j.tunnels.Stats().Open != 1 {
		t.Errorf("tunnels open %d, want 1", j.tunnels.Stats().Open)
	}

	// Another technician presenting this grant, and the technician aiming
	// beside the peer (another port on its IP), are refused.
	other := newTestHost(t, mesh.HostConfig{})
	connect(t, other, j.host)
	_, err = tunnel.Dial(ctxT(t), other, j.ID(), &pb.TunnelOpen{Target: hostPeerAddrs(j.host)(behind.ID())[0], Grant: g})
	wantRefused(t, j, err, catalog.CodePermissionDenied, ReasonGrantNotTechnician)
	_, err = tunnel.Dial(ctxT(t), console, j.ID(), &pb.TunnelOpen{Target: echoServer(t), Grant: g})
	wantRefused(t, j, err, catalog.CodePermissionDenied, ReasonGrantTarget)
}

// TestPeerAddrsNeedTheConnectionsIP: a peer that announces an address of
// another host (a compromised peer pointing technicians elsewhere) does
// not make it a target: only addresses at the IP its connection comes
// from count, and none once it is gone.
func TestPeerAddrsNeedTheConnectionsIP(t *testing.T) {
	j := newTestHost(t, mesh.HostConfig{ListenAddrs: loopbackTCP()})
	p := newTestHost(t, mesh.HostConfig{ListenAddrs: loopbackTCP()})
	connect(t, p, j)
	j.Peerstore().AddAddrs(p.ID(), []ma.Multiaddr{ma.StringCast("/ip4/192.0.2.9/tcp/22"),
		ma.StringCast("/ip4/127.0.0.1/tcp/5/p2p/" + j.ID().String() + "/p2p-circuit")}, time.Hour)
	var got []string
	eventually(t, "the peer's addresses by identify", func() bool { got = hostPeerAddrs(j)(p.ID()); return len(got) > 0 })
	for _, a := range got {
		if ap, err := netip.ParseAddrPort(a); err != nil || !ap.Addr().IsLoopback() {
			t.Errorf("target %s is not at the peer's connection's IP", a)
		}
	}
	if err := j.Network().ClosePeer(p.ID()); err != nil {
		t.Fatal(err)
	}
	if got := hostPeerAddrs(j)(p.ID()); len(got) != 0 {
		t.Errorf("targets %v of a peer with no connection", got)
	}
}

// TestEvictEndsLinks: a peer the ACL drops (deleted at the coordinator)
// loses its peer links at the next refresh, as it loses a libp2p
// connection: a link is no connection of the host, so evict ends its
// tunnels itself. Another peer's link stays.
func TestEvictEndsLinks(t *testing.T) {
	site := newTestHost(t, mesh.HostConfig{}).ID()
	echo := echoServer(t)
	goneKey, staysKey := newKey(t), newKey(t)
	gone, _ := peer.IDFromPrivateKey(goneKey)
	stays, _ := peer.IDFromPrivateKey(staysKey)
	was := testACL(site, []string{echo}, nil, []peer.ID{gone, stays})
	j := serving(t, site, was)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go j.tunnels.ServeLinks(l, linkFilter)
	link := func(k crypto.PrivKey) net.Conn {
		c, err := tunnel.DialLink(ctxT(t), l.Addr().String(), j.host.ID(), k, nil, &pb.TunnelOpen{Target: echo})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	goneLink, staysLink := link(goneKey), link(staysKey)
	now := testACL(site, []string{echo}, nil, []peer.ID{stays})
	j.acl.Store(now)
	j.evict(was, now)
	_ = goneLink.SetReadDeadline(time.Now().Add(10 * time.Second))
	var ne net.Error
	if _, err := goneLink.Read(make([]byte, 1)); err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the dropped peer's link was not ended: %v", err)
	}
	if _, err := staysLink.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	_ = staysLink.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(staysLink, make([]byte, 1)); err != nil {
		t.Fatalf("the other peer's link: %v", err)
	}
}
