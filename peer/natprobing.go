package peer

import (
	"net/netip"
	"sync/atomic"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/grant"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// natProbing is the site's nat-probing setting as the coordinator's last
// welcome or update told it: whether the puncher may probe port mappings
// (mesh/probe; punch.WithProbing) for a console whose grant names the IP
// the coordinator saw it at. It is on until a welcome says off, as for a
// site whose coordinator predates the setting.
type natProbing struct{ off atomic.Bool }

// on is what the puncher asks before each probe exchange.
func (n *natProbing) on() bool { return !n.off.Load() }

// checkProbeGrant verifies the grant a console shows in its probe answer
// (the site's signature, made out to remote for this peer, not expired or
// revoked; not used up: it opens no channel) and returns the console IP
// the coordinator signed in it: the only address probing may aim at.
func (d *Daemon) checkProbeGrant(remote peer.ID, g *pb.JumpGrant) (netip.Addr, error) {
	return d.sess.gate.CheckConsoleIP(g, grant.Check{Site: d.site.ID, Peer: d.host.ID(), Technician: remote, Now: d.clock.Now()})
}
