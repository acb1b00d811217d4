package relay

import "github.com/libp2p/go-libp2p/core/host"

// SetServiceHost wraps the host the circuit v2 service of relays New starts
// from now on is given (nil: the host itself), so a test can see what the
// relay's copy loop reads and writes. It returns a function that puts back
// the previous one.
func SetServiceHost(wrap func(host.Host) host.Host) (restore func()) {
	prev := serviceHost
	serviceHost = wrap
	return func() { serviceHost = prev }
}
