package peer

import "github.com/libp2p/go-libp2p/core/host"

// HostOf is the daemon's libp2p host, for tests that look at its transports
// and connections.
func HostOf(d *Daemon) host.Host { return d.host }
