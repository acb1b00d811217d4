package console_test

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/console"
)

// The path of a connection is read from its remote address, typed: the
// lab, the path statistics and `ping --json` count these kinds, and the
// printed text is what `jump -v` always printed (the lab reads it).
func TestAddrPath(t *testing.T) {
	const relay = "12D3KooWRBy97UB99e3J6hiPesre1MZeuNQvfan4gBziswrRJsNK"
	const target = "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN"
	relayID, err := peer.Decode(relay)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addr      string
		kind      console.PathKind
		relay     peer.ID
		transport string
		text      string
	}{
		{addr: "/ip4/198.51.100.7/tcp/4001/p2p/" + relay + "/p2p-circuit", kind: console.PathRelayed, relay: relayID, transport: "tcp",
			text: "relayed via " + relay + " (/ip4/198.51.100.7/tcp/4001/p2p/" + relay + "/p2p-circuit)"},
		{addr: "/ip4/198.51.100.7/udp/4001/quic-v1/p2p/" + relay + "/p2p-circuit/p2p/" + target, kind: console.PathRelayed, relay: relayID, transport: "quic",
			text: "relayed via " + relay + " (/ip4/198.51.100.7/udp/4001/quic-v1/p2p/" + relay + "/p2p-circuit/p2p/" + target + ")"},
		{addr: "/ip4/203.0.113.9/tcp/40123", kind: console.PathDirect, transport: "tcp", text: "direct /ip4/203.0.113.9/tcp/40123"},
		{addr: "/ip6/2001:db8::1/udp/5832/quic-v1", kind: console.PathDirect, transport: "quic", text: "direct /ip6/2001:db8::1/udp/5832/quic-v1"},
		// A peer ID in a direct address is not a relay.
		{addr: "/ip4/10.0.0.5/tcp/22/p2p/" + target, kind: console.PathDirect, transport: "tcp", text: "direct /ip4/10.0.0.5/tcp/22/p2p/" + target},
	} {
		p := console.AddrPath(ma.StringCast(tc.addr))
		if p.Kind != tc.kind || p.Relay != tc.relay || p.Transport != tc.transport || p.String() != tc.text {
			t.Errorf("%s: got %v %q %q %q, want %v %q %q %q", tc.addr, p.Kind, p.Relay, p.Transport, p.String(), tc.kind, tc.relay, tc.transport, tc.text)
		}
	}
	if got := (console.Path{}).String(); got != "not connected" {
		t.Errorf("zero path: %q", got)
	}
	for k, want := range map[console.PathKind]string{console.PathNone: "", console.PathDirect: "direct", console.PathRelayed: "relayed", console.PathJumpoint: "jumpoint"} {
		if k.String() != want {
			t.Errorf("kind %d: %q, want %q", k, k.String(), want)
		}
	}
}
