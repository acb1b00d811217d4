package punch

import (
	"crypto/rand"
	"errors"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// quicTestHost listens on TCP and QUIC on loopback.
func quicTestHost(t *testing.T) (host.Host, string) {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0"), ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")},
		RelayClient: true, Puncher: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	for _, a := range h.Network().ListenAddresses() {
		if v, err := a.ValueForProtocol(ma.P_UDP); err == nil {
			return h, v
		}
	}
	t.Fatal("no QUIC listen address")
	return nil, ""
}

// observeUDP feeds the puncher two trusted QUIC observations of its
// listening port with the mapped ports given.
func observeUDP(p *Puncher, udpPort string, ports ...int) {
	from := ma.StringCast("/ip4/127.0.0.1/udp/" + udpPort + "/quic-v1")
	now := time.Now()
	for i, port := range ports {
		id := []peer.ID{"coordinator", "relay"}[i%2]
		p.observe(event.EvtPeerIdentificationCompleted{
			Peer: id,
			Conn: fakeConn{local: from, remote: ma.StringCast("/ip4/198.51.100." + strconv.Itoa(10+i) + "/udp/4830/quic-v1"),
				opened: now.Add(time.Duration(i) * 100 * time.Millisecond)},
			ObservedAddr: ma.StringCast("/ip4/5.6.7.8/udp/" + strconv.Itoa(port) + "/quic-v1"),
		})
	}
}

// TestShouldProbe: when a puncher probes instead of punching. A host
// whose UDP mapping is random probes from the first attempt, one whose
// mapping is endpoint-independent from the second (a punch failed: the
// console's may be random), any other never; at most maxExchanges per
// remote; never with the site's nat-probing off or without a way to check
// a console's grant.
func TestShouldProbe(t *testing.T) {
	trusted := func(id peer.ID) bool { return id == "coordinator" || id == "relay" }
	check := WithGrantCheck(func(peer.ID, *pb.JumpGrant) (netip.Addr, error) { return netip.MustParseAddr("203.0.113.5"), nil })
	const console = peer.ID("console")

	t.Run("random", func(t *testing.T) {
		h, udp := quicTestHost(t)
		var off atomic.Bool
		p, err := Start(h, trusted, nil, check, WithProbing(func() bool { return !off.Load() }))
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if p.shouldProbe(console, 1) {
			t.Fatal("no UDP observation yet: probes")
		}
		observeUDP(p, udp, 31000, 47777)
		if !p.shouldProbe(console, 1) {
			t.Fatal("random mapping: does not probe on the first attempt")
		}
		off.Store(true)
		if p.shouldProbe(console, 1) {
			t.Fatal("nat-probing off: probes")
		}
		off.Store(false)
		p.mu.Lock()
		p.probes = map[peer.ID]int{console: maxExchanges}
		p.mu.Unlock()
		if p.shouldProbe(console, 3) {
			t.Fatalf("after %d exchanges: probes again", maxExchanges)
		}
		if !p.shouldProbe("another", 1) {
			t.Fatal("another console's bound taken by this one's exchanges")
		}
	})
	t.Run("endpoint-independent", func(t *testing.T) {
		h, udp := quicTestHost(t)
		p, err := Start(h, trusted, nil, check)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		port, _ := strconv.Atoi(udp)
		observeUDP(p, udp, port, port)
		if p.shouldProbe(console, 1) {
			t.Fatal("endpoint-independent: probes before a punch failed")
		}
		if !p.shouldProbe(console, 2) {
			t.Fatal("endpoint-independent: does not probe after a failed punch")
		}
	})
	t.Run("no grant check", func(t *testing.T) {
		h, udp := quicTestHost(t)
		p, err := Start(h, trusted, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		observeUDP(p, udp, 31000, 47777)
		if p.shouldProbe(console, 1) {
			t.Fatal("no way to check a console's grant: probes")
		}
	})
	t.Run("an untrusted observer", func(t *testing.T) {
		h, udp := quicTestHost(t)
		p, err := Start(h, func(id peer.ID) bool { return id == "coordinator" }, nil, check)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		observeUDP(p, udp, 31000, 47777) // the second "observer" is not trusted
		if p.shouldProbe(console, 1) {
			t.Fatal("a stranger's observation made the mapping look random")
		}
	})
}

// TestConsoleIP: the console IP comes from the grant the console shows
// (checked), else from a grant it showed on a session; a grant that does
// not check is not used, whatever it says.
func TestConsoleIP(t *testing.T) {
	h := newTestHost(t)
	signed, shown := netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("198.51.100.9")
	bad := errors.New("grant_invalid")
	var checkErr error
	p, err := Start(h, func(peer.ID) bool { return false }, nil,
		WithGrantCheck(func(peer.ID, *pb.JumpGrant) (netip.Addr, error) { return signed, checkErr }),
		WithGranted(func(id peer.ID) (netip.Addr, bool) { return shown, id == "session" }))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	g := &pb.JumpGrant{Body: []byte("x")}
	if ip, err := p.consoleIP("console", g); err != nil || ip != signed {
		t.Fatalf("checked grant: %v, %v; want %v", ip, err, signed)
	}
	checkErr = bad
	if ip, err := p.consoleIP("console", g); err == nil {
		t.Fatalf("a grant that does not check gave %v", ip)
	}
	if ip, err := p.consoleIP("session", g); err != nil || ip != shown {
		t.Fatalf("a grant shown on a session: %v, %v; want %v", ip, err, shown)
	}
	if ip, err := p.consoleIP("console", nil); err == nil {
		t.Fatalf("no grant at all gave %v", ip)
	}
}

// TestEndpointDependent: a remote whose exchange shows one public IP with
// two TCP ports is behind an endpoint-dependent NAT (a punch is skipped
// for a probe); one port, QUIC and private addresses do not count.
func TestEndpointDependent(t *testing.T) {
	for _, c := range []struct {
		addrs []string
		want  bool
	}{
		{[]string{"/ip4/5.6.7.8/tcp/27368", "/ip4/5.6.7.8/tcp/35085"}, true},
		{[]string{"/ip4/5.6.7.8/tcp/27368", "/ip4/5.6.7.8/tcp/27368"}, false},
		{[]string{"/ip4/5.6.7.8/tcp/27368", "/ip4/5.6.7.8/udp/35085/quic-v1"}, false},
		{[]string{"/ip4/5.6.7.8/tcp/27368", "/ip4/5.6.7.9/tcp/35085"}, false},
		{[]string{"/ip4/10.0.0.2/tcp/4001", "/ip4/10.0.0.2/tcp/4002"}, false},
		{nil, false},
	} {
		var addrs []ma.Multiaddr
		for _, a := range c.addrs {
			addrs = append(addrs, ma.StringCast(a))
		}
		if got := endpointDependent(addrs); got != c.want {
			t.Errorf("endpointDependent(%v) = %v, want %v", c.addrs, got, c.want)
		}
	}
}
