package mesh_test

import (
	"net"
	"testing"
	"time"

	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/mesh"
)

// lanOf is a console on 192.168.2.11/24 (and loopback).
func lanOf() ([]net.Addr, error) {
	_, lan, _ := net.ParseCIDR("192.168.2.0/24")
	lan.IP = net.ParseIP("192.168.2.11")
	_, lo, _ := net.ParseCIDR("127.0.0.0/8")
	lo.IP = net.ParseIP("127.0.0.1")
	_, ll, _ := net.ParseCIDR("fe80::/64")
	ll.IP = net.ParseIP("fe80::2")
	return []net.Addr{lo, lan, ll}, nil
}

const relayed = "/ip4/198.51.100.11/tcp/4832/p2p/12D3KooWLrcfcoRWP68md2ecPN4zKNSTnZgqS8j9eDdVrhwsWxbU/p2p-circuit"

func delays(t *testing.T, addrs ...string) map[string]time.Duration {
	t.Helper()
	var in []ma.Multiaddr
	for _, s := range addrs {
		in = append(in, ma.StringCast(s))
	}
	out := map[string]time.Duration{}
	for _, d := range mesh.LANDialRanker(lanOf)(in) {
		out[d.Addr.String()] = d.Delay
	}
	if len(out) != len(addrs) {
		t.Fatalf("ranked %d of %d addresses: %v", len(out), len(addrs), out)
	}
	return out
}

// TestLANDialRankerLANFirst: a peer on the console's subnet is dialled there
// at once, before its relay circuit, its NAT's public address, its
// backend network's address and its `::1` (an old coordinator's gift),
// which wait LANGrace: none of them puts the LAN address behind it.
func TestLANDialRankerLANFirst(t *testing.T) {
	d := delays(t, "/ip6/::1/tcp/4001", "/ip4/10.9.0.5/tcp/4001", "/ip4/192.168.2.10/tcp/4001", "/ip4/203.0.113.10/tcp/4001", relayed)
	if d["/ip4/192.168.2.10/tcp/4001"] != 0 {
		t.Errorf("LAN address: %v, want at once", d)
	}
	for _, a := range []string{relayed, "/ip4/203.0.113.10/tcp/4001", "/ip4/10.9.0.5/tcp/4001", "/ip6/::1/tcp/4001"} {
		if d[a] < mesh.LANGrace {
			t.Errorf("%s at %v, want ≥ %v", a, d[a], mesh.LANGrace)
		}
	}
	// Without a public address libp2p's default dials the relay at once;
	// here still LANGrace after the LAN.
	d = delays(t, "/ip4/192.168.2.10/tcp/4001", relayed)
	if d[relayed] != mesh.LANGrace {
		t.Errorf("relay with only a LAN address: %v, want %v", d[relayed], mesh.LANGrace)
	}
}

// TestLANDialRankerElsewhere: a peer on no subnet of ours is ranked as
// libp2p ranks it (a private address of another network is not ours, a
// link-local or loopback one never is, and a circuit is never local,
// whatever the relay's IP).
func TestLANDialRankerElsewhere(t *testing.T) {
	d := delays(t, "/ip4/10.1.2.3/tcp/4001", "/ip6/fe80::9/tcp/4001", "/ip4/127.0.0.1/tcp/4001", relayed)
	if d[relayed] != 0 {
		t.Errorf("relay with no LAN address: %v, want at once (libp2p's default without public addresses)", d[relayed])
	}
	onRelayLAN := "/ip4/192.168.2.1/tcp/4832/p2p/12D3KooWLrcfcoRWP68md2ecPN4zKNSTnZgqS8j9eDdVrhwsWxbU/p2p-circuit"
	if d := delays(t, onRelayLAN); d[onRelayLAN] != 0 {
		t.Errorf("a circuit through a relay on our LAN: %v, want at once", d)
	}
}

// TestLANDialRankerHappyEyeballsOnLAN: among LAN addresses libp2p's order
// stays (QUIC first, TCP a LAN round trip later), so a console does not
// open two connections to a coordinator on its LAN.
func TestLANDialRankerHappyEyeballsOnLAN(t *testing.T) {
	d := delays(t, "/ip4/192.168.2.10/udp/4830/quic-v1", "/ip4/192.168.2.10/tcp/4830")
	if d["/ip4/192.168.2.10/udp/4830/quic-v1"] != 0 || d["/ip4/192.168.2.10/tcp/4830"] != mesh.LANRTTBudget {
		t.Errorf("LAN QUIC and TCP: %v, want 0 and %v", d, mesh.LANRTTBudget)
	}
}
