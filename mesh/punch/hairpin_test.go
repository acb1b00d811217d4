package punch_test

import (
	"context"
	"crypto/rand"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/punch"
)

// hairpinHost is a real libp2p host on loopback with the listen addresses
// given.
func hairpinHost(t *testing.T, listen ...string) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var addrs []ma.Multiaddr
	for _, a := range listen {
		addrs = append(addrs, ma.StringCast(a))
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: addrs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// quicAddr is h's QUIC listening address.
func quicAddr(t *testing.T, h host.Host) netip.AddrPort {
	t.Helper()
	for _, l := range h.Network().ListenAddresses() {
		if _, err := l.ValueForProtocol(ma.P_QUIC_V1); err != nil {
			continue
		}
		na, err := manet.ToNetAddr(l.Decapsulate(ma.StringCast("/quic-v1")))
		if err != nil {
			t.Fatal(err)
		}
		return na.(*net.UDPAddr).AddrPort()
	}
	t.Fatal("no QUIC listen address")
	return netip.AddrPort{}
}

// silentSocket is a UDP socket on loopback that reads nothing: a mapping
// that leads to no QUIC socket of the host.
func silentSocket(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestHairpin(t *testing.T) {
	h := hairpinHost(t, "/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1")
	ctx := context.Background()

	t.Run("own listening address arrives", func(t *testing.T) {
		ok, err := punch.Hairpin(ctx, h, quicAddr(t, h))
		if err != nil || !ok {
			t.Fatalf("Hairpin(own QUIC address) = %v, %v; want true", ok, err)
		}
	})
	t.Run("a port that is not the host's", func(t *testing.T) {
		other := silentSocket(t).LocalAddr().(*net.UDPAddr).AddrPort()
		start := time.Now()
		ok, err := punch.Hairpin(ctx, h, other)
		if err != nil || ok {
			t.Fatalf("Hairpin(another socket) = %v, %v; want false", ok, err)
		}
		if d := time.Since(start); d > punch.HairpinTimeout+time.Second {
			t.Errorf("Hairpin took %v; bounded by %v", d, punch.HairpinTimeout)
		}
	})
	t.Run("v4-mapped address", func(t *testing.T) {
		a := quicAddr(t, h)
		ok, err := punch.Hairpin(ctx, h, netip.AddrPortFrom(netip.AddrFrom16(a.Addr().As16()), a.Port()))
		if err != nil || !ok {
			t.Fatalf("Hairpin(::ffff:own) = %v, %v; want true", ok, err)
		}
	})
	t.Run("context ends first", func(t *testing.T) {
		other := silentSocket(t).LocalAddr().(*net.UDPAddr).AddrPort()
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if ok, err := punch.Hairpin(cctx, h, other); err == nil || ok {
			t.Fatalf("Hairpin(ended context) = %v, %v; want an error", ok, err)
		}
	})
	t.Run("no address", func(t *testing.T) {
		for _, a := range []netip.AddrPort{{}, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0)} {
			if ok, err := punch.Hairpin(ctx, h, a); err == nil || ok {
				t.Errorf("Hairpin(%v) = %v, %v; want an error", a, ok, err)
			}
		}
	})
}

// TestHairpinNoQUIC: a host without a QUIC socket cannot tell (an error,
// not false).
func TestHairpinNoQUIC(t *testing.T) {
	h := hairpinHost(t, "/ip4/127.0.0.1/tcp/0")
	other := silentSocket(t).LocalAddr().(*net.UDPAddr).AddrPort()
	if ok, err := punch.Hairpin(context.Background(), h, other); err == nil || ok {
		t.Fatalf("Hairpin without QUIC = %v, %v; want an error", ok, err)
	}
}

// TestHairpinStrangerCannotSayYes: the attack. A stranger who receives the
// test's datagram (an observer that lied about the mapping, or a NAT that
// forwards it out to him) and floods the QUIC port with datagrams like it
// — the magic with another nonce, the datagram cut or padded, other
// non-QUIC bytes — cannot make Hairpin say true; only the very datagram
// counts. (Echoing it unchanged does: that is what hairpinning looks like
// from inside, and why the mapping must come from a trusted observer.)
func TestHairpinStrangerCannotSayYes(t *testing.T) {
	h := hairpinHost(t, "/ip4/127.0.0.1/udp/0/quic-v1")
	quic := quicAddr(t, h)
	stranger := silentSocket(t)
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		buf := make([]byte, 256)
		for {
			n, _, err := stranger.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			got := append([]byte(nil), buf[:n]...)
			flipped := append([]byte(nil), got...)
			flipped[len(flipped)-1] ^= 1
			for _, b := range [][]byte{flipped, got[:n-1], append(append([]byte(nil), got...), 0), {0x00}, {0x00, 'J', 'M', 'H'}} {
				for range 10 {
					stranger.WriteToUDPAddrPort(b, quic)
				}
			}
		}
	}()
	ok, err := punch.Hairpin(context.Background(), h, stranger.LocalAddr().(*net.UDPAddr).AddrPort())
	stranger.Close()
	if err != nil || ok {
		t.Fatalf("Hairpin with a stranger sending look-alikes = %v, %v; want false", ok, err)
	}
}
