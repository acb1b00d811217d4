package peer

import (
	"testing"

	ma "github.com/multiformats/go-multiaddr"
)

// TestOfferable: the peer reports no address that names the dialler's own
// host (loopback) or needs an interface to mean anything (link-local).
func TestOfferable(t *testing.T) {
	for s, want := range map[string]bool{
		"/ip4/192.168.2.10/tcp/4001":         true,
		"/ip4/203.0.113.10/udp/4001/quic-v1": true,
		"/ip6/2001:db8::1/tcp/4001":          true,
		"/dns4/web-01.lan/tcp/4001":          true,
		"/ip4/127.0.0.1/tcp/4001":            false,
		"/ip4/127.8.9.10/tcp/4001":           false,
		"/ip6/::1/tcp/4001":                  false,
		"/ip6/fe80::1/tcp/4001":              false,
		"/ip4/169.254.1.2/tcp/4001":          false,
		"/ip4/0.0.0.0/tcp/4001":              false,
	} {
		if got := offerable(ma.StringCast(s)); got != want {
			t.Errorf("offerable(%s) = %v, want %v", s, got, want)
		}
	}
}
