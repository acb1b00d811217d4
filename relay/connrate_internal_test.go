package relay

import (
	"net/netip"
	"testing"
)

// TestConnRate: members behind one address (an office NAT, a console
// whose every command opens new connections) get 256 connections at once
// where libp2p's default allowed 16; a flood from one address is still
// cut off, and another address keeps its own allowance.
func TestConnRate(t *testing.T) {
	lim := connRate()
	office, other := netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("198.51.100.9")
	for i := range 200 {
		if !lim.Allow(office) {
			t.Fatalf("connection %d from one address refused (libp2p's default stops at 16)", i+1)
		}
	}
	refused := false
	for range 1000 {
		if !lim.Allow(office) {
			refused = true
			break
		}
	}
	if !refused {
		t.Fatal("1,200 connections at once from one address all admitted: no bound")
	}
	if !lim.Allow(other) {
		t.Fatal("another address refused because of the first one's flood")
	}
	for range 1000 {
		if !lim.Allow(netip.MustParseAddr("127.0.0.1")) {
			t.Fatal("loopback limited")
		}
	}
}
