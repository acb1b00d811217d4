package probe

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestProxyForwardsOnlyTheHit: the proxy hands the listener only the
// datagrams of the hit's address, never a probe packet, carries the
// listener's answers back, and ends when idle.
func TestProxyForwardsOnlyTheHit(t *testing.T) {
	listen := udp(t, "127.0.0.1:0")   // the QUIC listener
	outer := udp(t, "127.0.0.1:0")    // the hard socket of the hit
	remote := udp(t, "127.0.0.1:0")   // the easy side
	stranger := udp(t, "127.0.0.1:0") // another port of the same IP
	other := udp(t, "127.0.0.2:0")    // another IP
	p, err := startProxy(outer, addrOf(remote), addrOf(listen), 300*time.Millisecond, func(netip.AddrPort, *atomic.Bool) bool { return true })
	if err != nil {
		t.Fatal(err)
	}
	defer p.stop()
	to := net.UDPAddrFromAddrPort(addrOf(outer))
	for _, c := range []*net.UDPConn{stranger, other} {
		if _, err := c.WriteTo([]byte("stranger"), to); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := remote.WriteTo(seal(bytes.Repeat([]byte{1}, KeySize), packet{typ: typeProbe, port: 5000}), to); err != nil {
		t.Fatal(err)
	}
	if _, err := remote.WriteTo([]byte("quic"), to); err != nil {
		t.Fatal(err)
	}
	got, from := read(t, listen)
	if got != "quic" {
		t.Fatalf("the listener got %q first, want the hit's %q (strangers' datagrams and probes are dropped)", got, "quic")
	}
	if _, err := listen.WriteTo([]byte("answer"), net.UDPAddrFromAddrPort(from)); err != nil {
		t.Fatal(err)
	}
	if got, src := read(t, remote); got != "answer" || src != addrOf(outer) {
		t.Fatalf("the remote got %q from %s, want %q from the hit socket %s", got, src, "answer", addrOf(outer))
	}
	select {
	case <-p.quit:
	case <-time.After(5 * time.Second):
		t.Fatal("the proxy did not end after its idle time")
	}
	eventually(t, "the proxy's goroutines end", func() bool { return proxies.Load() == 0 })
}

func udp(t *testing.T, addr string) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func addrOf(c *net.UDPConn) netip.AddrPort { return norm(c.LocalAddr().(*net.UDPAddr).AddrPort()) }

func read(t *testing.T, c *net.UDPConn) (string, netip.AddrPort) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 256)
	n, from, err := c.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n]), norm(from)
}

// TestRespondRefusesInbound: a peer that connects to a console itself
// cannot make it probe: Respond refuses with the reason, and nothing is
// sent.
func TestRespondRefusesInbound(t *testing.T) {
	k := newSink(t)
	setHooks(t, func(int, []uint16) uint16 { return k.addr().Port() })
	console := newHost(t, mesh.HostConfig{ListenAddrs: []ma.Multiaddr{tcpLoop, quicLoop}})
	peerH := newHost(t, mesh.HostConfig{ListenAddrs: []ma.Multiaddr{tcpLoop, quicLoop}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := peerH.Connect(ctx, peer.AddrInfo{ID: console.ID(), Addrs: console.Addrs()}); err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	console.SetStreamHandler(Protocol, func(s network.Stream) {
		_, err := Respond(ctx, s, local(console, &pb.ProbeSide{Kind: "random", PublicIp: "127.0.0.1"}))
		got <- err
	})
	s, err := peerH.NewStream(ctx, console.ID(), Protocol)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Initiate(ctx, s, local(peerH, &pb.ProbeSide{Kind: "endpoint-independent", UdpMapping: k.addr().String(), PublicIp: "127.0.0.1"}))
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), refuseInbound) {
		t.Fatalf("Initiate towards a console over the peer's own connection: %v, want %v with %q", err, ErrRefused, refuseInbound)
	}
	if err := <-got; err == nil {
		t.Fatal("Respond over an inbound connection: no error")
	}
	k.flush(t)
	if n := k.total(); n != 0 {
		t.Fatalf("%d datagrams sent after a refusal", n)
	}
}

// TestNotAllowedSendsNothing: a side whose Allowed refuses the address the
// other side named sends nothing there: neither openers nor probes.
func TestNotAllowedSendsNothing(t *testing.T) {
	for _, hard := range []pb.ProbeStart_Hard{pb.ProbeStart_PEER, pb.ProbeStart_CONSOLE} {
		t.Run(hard.String(), func(t *testing.T) {
			p := newPair(t)
			k := newSink(t) // the victim
			setHooks(t, func(int, []uint16) uint16 { return k.addr().Port() })
			hardSide := &pb.ProbeSide{Kind: "random", PublicIp: "127.0.0.1"}
			easySide := &pb.ProbeSide{Kind: "endpoint-independent", UdpMapping: k.addr().String(), PublicIp: "127.0.0.1"}
			peerL, consoleL := local(p.peer, hardSide), local(p.console, easySide)
			if hard == pb.ProbeStart_CONSOLE {
				peerL, consoleL = local(p.peer, easySide), local(p.console, hardSide)
			}
			peerL.Allowed = func(netip.Addr) bool { return false }
			consoleL.Allowed = func(ip netip.Addr) bool { return ip == netip.MustParseAddr("127.0.0.2") }
			po, co := p.run(t, peerL, consoleL)
			if !errors.Is(po.err, ErrNotAllowed) && !errors.Is(co.err, ErrNotAllowed) {
				t.Errorf("peer: %v; console: %v; want %v on one side", po.err, co.err, ErrNotAllowed)
			}
			if po.res.Hit || co.res.Hit || po.res.OpenersSent+co.res.OpenersSent+po.res.ProbesSent+co.res.ProbesSent != 0 {
				t.Errorf("peer %+v, console %+v: packets sent", po.res, co.res)
			}
			k.flush(t)
			if n := k.total(); n != 0 {
				t.Fatalf("the victim got %d datagrams", n)
			}
		})
	}
}

// rawPeer is a compromised peer: the test speaks the exchange itself, to
// a console whose Respond runs with consoleL.
type rawPeer struct {
	s   network.Stream
	r   pbio.ReadCloser
	w   pbio.WriteCloser
	key []byte
	got chan outcome
	ans *pb.ProbeAnswer
}

func newRawPeer(t *testing.T, p *pair, consoleL Local, side *pb.ProbeSide, start *pb.ProbeStart) *rawPeer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*Timeout)
	t.Cleanup(cancel)
	rp := &rawPeer{key: bytes.Repeat([]byte{0x5a}, KeySize), got: make(chan outcome, 1)}
	p.console.SetStreamHandler(Protocol, func(s network.Stream) {
		r, err := Respond(ctx, s, consoleL)
		rp.got <- outcome{r, err}
	})
	s, err := p.peer.NewStream(network.WithAllowLimitedConn(network.WithNoDial(ctx, "probe"), "probe"), p.console.ID(), Protocol)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Reset() })
	_ = s.SetDeadline(time.Now().Add(2 * Timeout))
	rp.s, rp.r, rp.w = s, pbio.NewDelimitedReader(s, maxMsg), pbio.NewDelimitedWriter(s)
	if err := rp.w.WriteMsg(&pb.ProbeOffer{Side: side, Key: rp.key}); err != nil {
		t.Fatal(err)
	}
	rp.ans = new(pb.ProbeAnswer)
	if err := rp.r.ReadMsg(rp.ans); err != nil {
		t.Fatal(err)
	}
	if err := rp.w.WriteMsg(start); err != nil {
		t.Fatal(err)
	}
	return rp
}

func (rp *rawPeer) done(t *testing.T) {
	t.Helper()
	if err := rp.w.WriteMsg(&pb.ProbeEvent{Event: &pb.ProbeEvent_Done{Done: &pb.ProbeDone{Error: "test: enough", ProbesSent: 1 << 30}}}); err != nil {
		t.Fatal(err)
	}
}

// next reads the console's next event; nil when the stream ended.
func (rp *rawPeer) next(t *testing.T) *pb.ProbeEvent {
	t.Helper()
	e := new(pb.ProbeEvent)
	if err := rp.r.ReadMsg(e); err != nil {
		return nil
	}
	return e
}

func (rp *rawPeer) outcome(t *testing.T) outcome {
	t.Helper()
	select {
	case o := <-rp.got:
		return o
	case <-time.After(2 * Timeout):
		t.Fatal("Respond did not end")
		return outcome{}
	}
}

// TestRemoteNumbersClamped: a peer that asks a console for a million
// sockets or probes gets the budget, paced.
func TestRemoteNumbersClamped(t *testing.T) {
	const million = 1_000_000
	t.Run("sockets", func(t *testing.T) {
		p := newPair(t)
		k := newSink(t)
		hk := setHooks(t, func(int, []uint16) uint16 { return k.addr().Port() })
		rp := newRawPeer(t, p, local(p.console, &pb.ProbeSide{Kind: "random"}),
			&pb.ProbeSide{Kind: "endpoint-independent", UdpMapping: k.addr().String(), PublicIp: "127.0.0.1"},
			&pb.ProbeStart{Hard: pb.ProbeStart_CONSOLE, Sockets: million, Probes: million})
		eventually(t, "the budget's openers sent", func() bool { return len(hk.sentTimes(typeOpener)) >= MaxSockets })
		// The exchange ends; openers past the budget, were there any, were
		// sent before it did and are counted below.
		rp.done(t)
		o := rp.outcome(t)
		k.flush(t)
		if o.res.OpenersSent != MaxSockets || k.count(typeOpener) > MaxSockets || o.res.ProbesSent > MaxProbes {
			t.Fatalf("asked for %d sockets: sent %d openers, the victim got %d, probes reported %d", million, o.res.OpenersSent, k.count(typeOpener), o.res.ProbesSent)
		}
		ts := hk.sentTimes(typeOpener)
		t.Logf("%d openers in %s", len(ts), ts[len(ts)-1].Sub(ts[0]))
		if ts[len(ts)-1].Sub(ts[0]) < (MaxSockets-1)*OpenerGap {
			t.Errorf("%d openers in %s, less than %s", len(ts), ts[len(ts)-1].Sub(ts[0]), (MaxSockets-1)*OpenerGap)
		}
		checkPacing(t, hk)
	})
	t.Run("probes", func(t *testing.T) {
		p := newPair(t)
		k := newSink(t)
		hk := setHooks(t, func(int, []uint16) uint16 { return k.addr().Port() })
		rp := newRawPeer(t, p, local(p.console, &pb.ProbeSide{Kind: "endpoint-independent", UdpMapping: "127.0.0.1:9"}),
			&pb.ProbeSide{Kind: "random", PublicIp: "127.0.0.1"},
			&pb.ProbeStart{Hard: pb.ProbeStart_PEER, Sockets: million, Probes: million})
		var done *pb.ProbeDone
		for e := rp.next(t); e != nil && done == nil; e = rp.next(t) {
			done = e.GetDone()
		}
		o := rp.outcome(t)
		k.flush(t)
		if !errors.Is(o.err, ErrNoHit) || done == nil || done.GetProbesSent() != MaxProbes || o.res.ProbesSent != MaxProbes || k.count(typeProbe) > MaxProbes {
			t.Fatalf("asked for %d probes: %v, done %v, sent %d, the victim got %d", million, o.err, done, o.res.ProbesSent, k.count(typeProbe))
		}
		ts := hk.sentTimes(typeProbe)
		t.Logf("%d probes in %s; the exchange took %s", len(ts), ts[len(ts)-1].Sub(ts[0]), o.res.Took)
		if ts[len(ts)-1].Sub(ts[0]) < (MaxProbes-1)*ProbeGap {
			t.Errorf("%d probes in %s, less than %s", len(ts), ts[len(ts)-1].Sub(ts[0]), (MaxProbes-1)*ProbeGap)
		}
		checkPacing(t, hk)
	})
}

// TestStrangerCannotHit: packets that do not verify (another key) or come
// from another IP than the allowed one are no hit, on either side; the
// remote's valid packet then is (the path works).
func TestStrangerCannotHit(t *testing.T) {
	wrongKey := bytes.Repeat([]byte{0x33}, KeySize)
	stranger := udp(t, "127.0.0.2:0")
	same := udp(t, "127.0.0.1:0")
	t.Run("hard", func(t *testing.T) {
		p := newPair(t)
		k := newSink(t)
		hk := setHooks(t, func(int, []uint16) uint16 { return k.addr().Port() })
		rp := newRawPeer(t, p, local(p.console, &pb.ProbeSide{Kind: "random"}),
			&pb.ProbeSide{Kind: "endpoint-independent", UdpMapping: k.addr().String(), PublicIp: "127.0.0.1"},
			&pb.ProbeStart{Hard: pb.ProbeStart_CONSOLE, Sockets: 16})
		eventually(t, "16 hard sockets", func() bool { hk.mu.Lock(); defer hk.mu.Unlock(); return len(hk.ports) == 16 })
		hk.mu.Lock()
		ports := append([]uint16(nil), hk.ports...)
		hk.mu.Unlock()
		to := func(port uint16) *net.UDPAddr { return net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, port)) }
		for _, port := range ports {
			_, _ = same.WriteTo(seal(wrongKey, packet{typ: typeProbe, port: port}), to(port))
			_, _ = stranger.WriteTo(seal(rp.key, packet{typ: typeProbe, port: port}), to(port))
			_, _ = same.WriteTo(seal(rp.key, packet{typ: typeOpener, port: port}), to(port)) // not a probe
		}
		_, _ = same.WriteTo(seal(rp.key, packet{typ: typeProbe, port: ports[3]}), to(ports[3]))
		e := rp.next(t)
		if h := e.GetHit(); h == nil || h.GetIndex() != 3 || h.GetPort() != uint32(ports[3]) {
			t.Fatalf("first event %v, want the hit of socket 3 (port %d) only", e, ports[3])
		}
		if r := rp.next(t).GetReady(); r == nil || r.GetIndex() != 3 {
			t.Fatalf("no ready for socket 3: %v", r)
		}
		rp.done(t)
		o := rp.outcome(t)
		if !o.res.Hit || o.err == nil {
			t.Fatalf("%+v, %v: want a hit, then the error the peer's done named", o.res, o.err)
		}
	})
	t.Run("easy", func(t *testing.T) {
		p := newPair(t)
		k := newSink(t)
		setHooks(t, func(int, []uint16) uint16 { return k.addr().Port() })
		rp := newRawPeer(t, p, local(p.console, &pb.ProbeSide{Kind: "endpoint-independent", UdpMapping: "127.0.0.1:9"}),
			&pb.ProbeSide{Kind: "random", PublicIp: "127.0.0.1"},
			&pb.ProbeStart{Hard: pb.ProbeStart_PEER, Sockets: 16})
		eventually(t, "probing started", func() bool { k.flush(t); return k.count(typeProbe) > 0 })
		to := net.UDPAddrFromAddrPort(quicAddr(t, p.console))
		_, _ = same.WriteTo(seal(wrongKey, packet{typ: typeOpener, index: 1}), to)
		_, _ = stranger.WriteTo(seal(rp.key, packet{typ: typeOpener, index: 1}), to)
		_, _ = same.WriteTo(seal(rp.key, packet{typ: typeOpener, index: 16}), to) // no such socket
		_, _ = same.WriteTo(seal(rp.key, packet{typ: typeProbe, port: 5000}), to) // not an opener
		_, _ = same.WriteTo(seal(rp.key, packet{typ: typeOpener, index: 2}), to)
		e := rp.next(t)
		if h := e.GetHit(); h == nil || h.GetIndex() != 2 || h.GetPort() != uint32(addrOf(same).Port()) {
			t.Fatalf("first event %v, want the hit of socket 2 from port %d only", e, addrOf(same).Port())
		}
		_ = rp.w.WriteMsg(&pb.ProbeEvent{Event: &pb.ProbeEvent_Failed{Failed: "test: no proxy"}})
		o := rp.outcome(t)
		if !o.res.Hit || !errors.Is(o.err, ErrRemoteFailed) {
			t.Fatalf("%+v, %v: want a hit, then %v", o.res, o.err, ErrRemoteFailed)
		}
	})
	eventually(t, "the proxies end", func() bool { return proxies.Load() == 0 })
	noProbeGoroutines(t)
}

// TestGrantDecidesWhereThePeerProbes: the peer takes the console's IP
// from the grant the console's answer carries: a grant that does not
// verify stops the exchange before anything is sent, and one naming
// another IP than the console's side makes the peer send nothing either
// (the console, allowed, may probe until the peer's failed reaches it).
func TestGrantDecidesWhereThePeerProbes(t *testing.T) {
	for _, c := range []struct {
		name string
		ip   netip.Addr
		err  error
		want error
	}{
		{"invalid", netip.Addr{}, errors.New("test: grant_invalid"), ErrGrant},
		{"other IP", netip.MustParseAddr("127.0.0.2"), nil, ErrNotAllowed},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPair(t)
			k := newSink(t)
			setHooks(t, func(int, []uint16) uint16 { return k.addr().Port() })
			peerL := local(p.peer, &pb.ProbeSide{Kind: "random", PublicIp: "127.0.0.1"})
			var shown *pb.JumpGrant
			peerL.CheckGrant = func(remote peer.ID, g *pb.JumpGrant) (netip.Addr, error) {
				if remote != p.console.ID() {
					t.Errorf("CheckGrant for %s, want the console %s", remote, p.console.ID())
				}
				shown = g
				return c.ip, c.err
			}
			consoleL := local(p.console, &pb.ProbeSide{Kind: "endpoint-independent", UdpMapping: k.addr().String(), PublicIp: "127.0.0.1"})
			consoleL.Grant = &pb.JumpGrant{Body: []byte("the console's grant"), Signature: []byte("sig")}
			po, co := p.run(t, peerL, consoleL)
			if !errors.Is(po.err, c.want) {
				t.Errorf("peer: %v, want %v", po.err, c.want)
			}
			if string(shown.GetBody()) != "the console's grant" {
				t.Errorf("CheckGrant saw %v, want the console's grant", shown)
			}
			if c.err != nil && (po.res.Hard != pb.ProbeStart_NONE || co.res.Hard != pb.ProbeStart_NONE || co.err != nil) {
				t.Errorf("peer %+v, console %+v, %v: want NONE on both sides, no error on the console's", po.res, co.res, co.err)
			}
			k.flush(t)
			if n := k.count(typeOpener); n != 0 || c.err != nil && k.total() != 0 {
				t.Fatalf("%d openers, %d datagrams in all sent", n, k.total())
			}
		})
	}
}
