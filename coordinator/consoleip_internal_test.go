package coordinator

import (
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

// consoleIP takes the IP of the control connection's remote address, and
// none through a relay circuit (that IP is the relay's, not the console's).
func TestConsoleIPFromRemoteAddr(t *testing.T) {
	for addr, want := range map[string]string{
		"/ip4/203.0.113.7/udp/4001/quic-v1":          "203.0.113.7",
		"/ip4/203.0.113.7/tcp/4001":                  "203.0.113.7",
		"/ip6/2001:db8::5/udp/4001/quic-v1":          "2001:db8::5",
		"/ip6/::ffff:203.0.113.7/udp/4001/quic-v1":   "203.0.113.7",
		"/ip6zone/eth0/ip6/fe80::1/udp/4001/quic-v1": "",
		"/ip4/198.51.100.1/udp/4001/quic-v1/p2p/12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN/p2p-circuit": "",
		"/dns4/console.example/tcp/4001": "",
		"/ip4/0.0.0.0/tcp/4001":          "",
	} {
		a, err := ma.NewMultiaddr(addr)
		if err != nil {
			t.Fatalf("%s: %v", addr, err)
		}
		if got := consoleIP(a); got != want {
			t.Errorf("consoleIP(%s) = %q, want %q", addr, got, want)
		}
	}
	if got := consoleIP(nil); got != "" {
		t.Errorf("consoleIP(nil) = %q", got)
	}
}
