package probe

import (
	"context"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

const echoProto = "/jumpmesh/test/echo"

// TestProbePeerHard: the peer's NAT is "random" and the console's
// endpoint-independent, so the peer opens the sockets. Its openers go to
// a sink (on loopback they would reach the console at once); one of the
// console's probes goes to a hard socket's port: the hard side's own hit.
// The console then dials through the peer's proxy.
func TestProbePeerHard(t *testing.T) {
	p := newPair(t)
	k := newSink(t)
	hk := setHooks(t, func(i int, ports []uint16) uint16 {
		if i >= 20 && len(ports) > 10 {
			return ports[len(ports)/2]
		}
		return k.addr().Port() // misses land in the sink
	})
	peerL := local(p.peer, &pb.ProbeSide{Kind: "random", PublicIp: "127.0.0.1"})
	consoleL := local(p.console, &pb.ProbeSide{Kind: "endpoint-independent", UdpMapping: k.addr().String(), PublicIp: "127.0.0.1"})
	po, co := p.run(t, peerL, consoleL)
	checkDirect(t, p, pb.ProbeStart_PEER, po, co)
	k.flush(t)
	if n := k.count(typeOpener); n == 0 || n > MaxSockets || n != po.res.OpenersSent {
		t.Errorf("the sink got %d openers, the peer sent %d (≤ %d)", n, po.res.OpenersSent, MaxSockets)
	}
	if n := k.count(typeProbe); n >= co.res.ProbesSent || co.res.ProbesSent > MaxProbes {
		t.Errorf("the sink got %d probes, the console sent %d: the hit is not among them", n, co.res.ProbesSent)
	}
	checkPacing(t, hk)
	checkEcho(t, p.console, p.peer)
	// The proxy ends with the connection it carries.
	if err := directQUIC(t, p.console, p.peer).Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the proxy ends with its connection", func() bool { return proxies.Load() == 0 })
	noProbeGoroutines(t)
}

// TestProbeConsoleHard: the console's NAT is "random", the peer's
// endpoint-independent: the console opens the sockets and its openers
// reach the peer's QUIC socket, the easy side's hit. The peer's probes
// all go to a sink. The peer dials through the console's proxy.
func TestProbeConsoleHard(t *testing.T) {
	p := newPair(t)
	k := newSink(t)
	hk := setHooks(t, func(int, []uint16) uint16 { return k.addr().Port() })
	peerL := local(p.peer, &pb.ProbeSide{Kind: "endpoint-independent", UdpMapping: quicAddr(t, p.peer).String(), PublicIp: "127.0.0.1"})
	consoleL := local(p.console, &pb.ProbeSide{Kind: "random", PublicIp: "127.0.0.1"})
	po, co := p.run(t, peerL, consoleL)
	checkDirect(t, p, pb.ProbeStart_CONSOLE, po, co)
	k.flush(t)
	if n := k.count(typeProbe); n != po.res.ProbesSent || n > MaxProbes {
		t.Errorf("the sink got %d probes, the peer sent %d (≤ %d)", n, po.res.ProbesSent, MaxProbes)
	}
	if co.res.ProbesSent != po.res.ProbesSent {
		t.Errorf("the console heard of %d probes, the peer sent %d", co.res.ProbesSent, po.res.ProbesSent)
	}
	checkPacing(t, hk)
	checkEcho(t, p.peer, p.console)
	closeAndWaitProxies(t, p)
}

// checkDirect: both sides hit and end with a direct QUIC connection; the
// easy side's goes to a hard socket's port, the hard side's comes from
// its proxy (not from the easy side's QUIC port).
func checkDirect(t *testing.T, p *pair, hard pb.ProbeStart_Hard, po, co outcome) {
	t.Helper()
	if po.err != nil || co.err != nil {
		t.Fatalf("peer: %v; console: %v", po.err, co.err)
	}
	for who, o := range map[string]outcome{"peer": po, "console": co} {
		if o.res.Hard != hard || !o.res.Hit || !o.res.Direct {
			t.Errorf("%s: %+v, want hard %s, a hit, direct", who, o.res, hard)
		}
		t.Logf("%s: %+v", who, o.res)
	}
	hardH, easyH := p.peer, p.console
	if hard == pb.ProbeStart_CONSOLE {
		hardH, easyH = easyH, hardH
	}
	easyConn := directQUIC(t, easyH, hardH)
	if port := udpPort(t, easyConn.RemoteMultiaddr()); port == int(quicAddr(t, hardH).Port()) {
		t.Errorf("the easy side reached the hard side's QUIC listener directly (%s), not its probe socket", easyConn.RemoteMultiaddr())
	}
	hardConn := directQUIC(t, hardH, easyH)
	if port := udpPort(t, hardConn.RemoteMultiaddr()); port == int(quicAddr(t, easyH).Port()) {
		t.Errorf("the hard side sees the easy side's own port (%s), not its proxy", hardConn.RemoteMultiaddr())
	}
}

func directQUIC(t *testing.T, from, to host.Host) network.Conn {
	t.Helper()
	for _, c := range from.Network().ConnsToPeer(to.ID()) {
		if _, err := c.RemoteMultiaddr().ValueForProtocol(ma.P_QUIC_V1); err == nil && !mesh.IsCircuit(c.RemoteMultiaddr()) {
			return c
		}
	}
	t.Fatalf("no direct QUIC connection from %s to %s", from.ID(), to.ID())
	return nil
}

func udpPort(t *testing.T, a ma.Multiaddr) int {
	t.Helper()
	na, err := manet.ToNetAddr(a.Decapsulate(quicV1))
	if err != nil {
		t.Fatal(err)
	}
	return na.(*net.UDPAddr).Port
}

// checkPacing: the budget held and no two packets of a kind left closer
// than their gap.
func checkPacing(t *testing.T, hk *hooks) {
	t.Helper()
	for typ, gap := range map[byte]time.Duration{typeOpener: OpenerGap, typeProbe: ProbeGap} {
		ts := hk.sentTimes(typ)
		if max := map[byte]int{typeOpener: MaxSockets, typeProbe: MaxProbes}[typ]; len(ts) > max {
			t.Errorf("%d packets of type %d, budget %d", len(ts), typ, max)
		}
		for i := 1; i < len(ts); i++ {
			if d := ts[i].Sub(ts[i-1]); d < gap {
				t.Fatalf("packets %d and %d of type %d left %s apart, less than %s", i-1, i, typ, d, gap)
			}
		}
	}
}

// checkEcho: a stream from a to b, over the direct connection, echoes.
func checkEcho(t *testing.T, a, b host.Host) {
	t.Helper()
	b.SetStreamHandler(echoProto, func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, s)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := a.NewStream(network.WithNoDial(ctx, "test"), b.ID(), echoProto)
	if err != nil {
		t.Fatalf("echo stream: %v", err)
	}
	defer s.Close()
	if mesh.IsCircuit(s.Conn().RemoteMultiaddr()) {
		t.Fatalf("the echo stream went through the relay (%s)", s.Conn().RemoteMultiaddr())
	}
	_ = s.SetDeadline(time.Now().Add(10 * time.Second))
	msg := []byte("through the probe's hole")
	if _, err := s.Write(msg); err != nil {
		t.Fatal(err)
	}
	_ = s.CloseWrite()
	got, err := io.ReadAll(s)
	if err != nil || string(got) != string(msg) {
		t.Fatalf("echo: %q, %v", got, err)
	}
}

// closeAndWaitProxies closes both hosts: the proxy ends with its host.
func closeAndWaitProxies(t *testing.T, p *pair) {
	t.Helper()
	p.peer.Close()
	p.console.Close()
	eventually(t, "the proxies end when their host closes", func() bool { return proxies.Load() == 0 })
	noProbeGoroutines(t)
}

// noProbeGoroutines: once the exchanges returned and the proxies ended,
// no goroutine of the package is left.
func noProbeGoroutines(t *testing.T) {
	t.Helper()
	var stacks string
	eventually(t, "no goroutine of mesh/probe left", func() bool {
		buf := make([]byte, 1<<22)
		stacks = string(buf[:runtime.Stack(buf, true)])
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "jumpmesh/mesh/probe.") && !strings.Contains(g, "jumpmesh/mesh/probe.Test") && !strings.Contains(g, "jumpmesh/mesh/probe.noProbeGoroutines") && !strings.Contains(g, "jumpmesh/mesh/probe.newSink") {
				return false
			}
		}
		return true
	})
}
