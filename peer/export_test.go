package peer

import (
	"net/netip"

	"github.com/libp2p/go-libp2p/core/host"
	lpeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// MoveTo hands the daemon an order to move, as its coordinator would send
// it (move.go); false when the order is ignored.
func MoveTo(d *Daemon, m *pb.PeerMove) bool { return d.moveTo(m) }

// HostOf is the daemon's libp2p host, for tests that look at its transports
// and connections.
func HostOf(d *Daemon) host.Host { return d.host }

// ProbingOn is what the daemon's puncher asks before a probe exchange
// (punch.WithProbing).
func ProbingOn(d *Daemon) bool { return d.natProbing.on() }

// BulkForwards is how many forwards asked the daemon for a bulk
// connection, and for how many it made an offer (on a bulk listener it
// held open).
func BulkForwards(d *Daemon) (asked, offered int64) {
	return d.bulk.asked.Load(), d.bulk.offered.Load()
}

// BulkOn is the site's bulk-connections setting as the daemon holds it.
func BulkOn(d *Daemon) bool { return d.bulk.on() }

// GrantedConsoleIP is what the daemon's puncher learns of a console's
// public IP (punch.WithGranted).
func GrantedConsoleIP(d *Daemon, console lpeer.ID) (netip.Addr, bool) {
	return d.sess.gate.ConsoleIP(console)
}
