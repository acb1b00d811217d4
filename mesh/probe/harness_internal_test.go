package probe

import (
	"context"
	"crypto/rand"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

func TestMain(m *testing.M) {
	proxyTick = 20 * time.Millisecond // proxies notice a closed host at once
	os.Exit(m.Run())
}

var loopback = netip.MustParseAddr("127.0.0.1")

func onlyLoopback(ip netip.Addr) bool { return ip == loopback }

func newHost(t *testing.T, cfg mesh.HostConfig) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Key = key
	h, err := mesh.NewHost(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

var (
	tcpLoop  = ma.StringCast("/ip4/127.0.0.1/tcp/0")
	quicLoop = ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")
)

// pair is a peer and a console on loopback, connected the way a jump
// connects them: the console through a relay's circuit to the peer. Both
// listen on TCP and QUIC but announce only their circuit address, so a
// direct connection between them can only come from probing.
type pair struct {
	peer, console host.Host
}

func newPair(t *testing.T) *pair {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	relayHost := newHost(t, mesh.HostConfig{ListenAddrs: []ma.Multiaddr{tcpLoop}, ResourceManager: &network.NullResourceManager{}})
	svc, err := relayv2.New(relayHost, relayv2.WithInfiniteLimits())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	relayInfo := peer.AddrInfo{ID: relayHost.ID(), Addrs: relayHost.Addrs()}
	circuit := relayHost.Addrs()[0].Encapsulate(ma.StringCast("/p2p/" + relayHost.ID().String() + "/p2p-circuit"))
	cfg := mesh.HostConfig{RelayClient: true, Puncher: true, ListenAddrs: []ma.Multiaddr{tcpLoop, quicLoop}, AnnounceAddrs: []ma.Multiaddr{circuit}}
	p := &pair{peer: newHost(t, cfg), console: newHost(t, cfg)}
	if err := p.peer.Connect(ctx, relayInfo); err != nil {
		t.Fatalf("peer to relay: %v", err)
	}
	if _, err := client.Reserve(ctx, p.peer, relayInfo); err != nil {
		t.Fatalf("reserving on the relay: %v", err)
	}
	cctx := network.WithAllowLimitedConn(ctx, "test: through the relay")
	if err := p.console.Connect(cctx, peer.AddrInfo{ID: p.peer.ID(), Addrs: []ma.Multiaddr{circuit}}); err != nil {
		t.Fatalf("console to peer through the relay: %v", err)
	}
	if direct(p.console, p.peer.ID()) || direct(p.peer, p.console.ID()) {
		t.Fatal("the pair starts with a direct connection")
	}
	return p
}

// quicAddr is h's QUIC listening address.
func quicAddr(t *testing.T, h host.Host) netip.AddrPort {
	t.Helper()
	a, err := quicListener(h, "udp4")
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// local is a side's Local on loopback.
func local(h host.Host, side *pb.ProbeSide) Local {
	return Local{
		Host:    h,
		Side:    side,
		UDP:     func(nw string) (net.PacketConn, error) { return mesh.SharedUDP(h, nw) },
		Allowed: onlyLoopback,
	}
}

type outcome struct {
	res Result
	err error
}

// run runs one exchange: the console's handler responds, the peer
// initiates over the relayed connection. It returns both outcomes.
func (p *pair) run(t *testing.T, peerL, consoleL Local) (peerOut, consoleOut outcome) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*Timeout)
	defer cancel()
	got := make(chan outcome, 1)
	p.console.SetStreamHandler(Protocol, func(s network.Stream) {
		r, err := Respond(ctx, s, consoleL)
		got <- outcome{r, err}
	})
	t.Cleanup(func() { p.console.RemoveStreamHandler(Protocol) })
	sctx := network.WithAllowLimitedConn(network.WithNoDial(ctx, "probe"), "probe")
	s, err := p.peer.NewStream(sctx, p.console.ID(), Protocol)
	if err != nil {
		t.Fatalf("opening the probe stream: %v", err)
	}
	r, err := Initiate(ctx, s, peerL)
	peerOut = outcome{r, err}
	select {
	case consoleOut = <-got:
	case <-ctx.Done():
		t.Fatal("the console's Respond did not end")
	}
	return peerOut, consoleOut
}

// sink is a UDP listener on loopback standing in for an address that
// must receive nothing, or no more than the budget: it counts openers,
// probes and other datagrams.
type sink struct {
	c    *net.UDPConn
	mu   sync.Mutex
	n    map[byte]int // by type byte (0: not one of our packets)
	wg   sync.WaitGroup
	mark chan struct{}
}

func newSink(t *testing.T) *sink {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback, 0)))
	if err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadBuffer(4 << 20)
	k := &sink{c: c, n: map[byte]int{}, mark: make(chan struct{}, 1)}
	k.wg.Go(func() {
		buf := make([]byte, 2048)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if n == 1 && buf[0] == 'M' {
				k.mark <- struct{}{}
				continue
			}
			typ := byte(0)
			if isProbePacket(buf[:n]) && n > 4 {
				typ = buf[4]
			}
			k.mu.Lock()
			k.n[typ]++
			k.mu.Unlock()
		}
	})
	t.Cleanup(func() { c.Close(); k.wg.Wait() })
	return k
}

func (k *sink) addr() netip.AddrPort { return k.c.LocalAddr().(*net.UDPAddr).AddrPort() }

func (k *sink) count(typ byte) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.n[typ]
}

func (k *sink) total() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.n[0] + k.n[typeOpener] + k.n[typeProbe]
}

// flush waits until everything sent to the sink before it was counted:
// loopback queues datagrams in the order they were sent.
func (k *sink) flush(t *testing.T) {
	t.Helper()
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(k.addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte{'M'}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-k.mark:
	case <-time.After(5 * time.Second):
		t.Fatal("the sink's mark did not come")
	}
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within 10 s: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hooks sets the test hooks for one test: the hard sockets' ports are
// recorded, and probe i goes to probePort(i, ports so far) (0: the
// random port).
type hooks struct {
	mu    sync.Mutex
	ports []uint16
	sent  map[byte][]time.Time
}

func setHooks(t *testing.T, probePort func(i int, ports []uint16) uint16) *hooks {
	hk := &hooks{sent: map[byte][]time.Time{}}
	testSocketOpened = func(_ int, port uint16) {
		hk.mu.Lock()
		hk.ports = append(hk.ports, port)
		hk.mu.Unlock()
	}
	testProbePort = func(i int, random uint16) uint16 {
		hk.mu.Lock()
		ports := append([]uint16(nil), hk.ports...)
		hk.mu.Unlock()
		if p := probePort(i, ports); p != 0 {
			return p
		}
		return random
	}
	testSent = func(typ byte, at time.Time) {
		hk.mu.Lock()
		hk.sent[typ] = append(hk.sent[typ], at)
		hk.mu.Unlock()
	}
	t.Cleanup(func() { testSocketOpened, testProbePort, testSent = nil, nil, nil })
	return hk
}

func (hk *hooks) sentTimes(typ byte) []time.Time {
	hk.mu.Lock()
	defer hk.mu.Unlock()
	return append([]time.Time(nil), hk.sent[typ]...)
}
