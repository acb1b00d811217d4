package peer

import (
	"context"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Moving to another coordinator of the site (coordinator/rebalance.go):
// the coordinator holding the peer, above its share of the site's peers,
// names another member's addresses. The peer ends its session and dials
// those addresses only, once (libp2p dials every address its peerstore
// holds for an ID, so the others are set aside for that dial); whatever
// fails there, it dials every address it knows, as after any lost
// connection. The order comes only on the peer's own stream to the site's
// ID, as welcomes do, and the dial still checks the ID: addresses that
// are no coordinator's of the site (another ID, a circuit) are dropped.

// moveOrder ends a session when the coordinator asked the peer to move.
type moveOrder struct{ reason string }

func (m moveOrder) Error() string { return "moving to another coordinator: " + m.reason }

// moveTo keeps the addresses m names for the next dial; false if none is a
// coordinator address of the site (the order is then ignored).
func (d *Daemon) moveTo(m *pb.PeerMove) bool {
	if d.config.PublicSiteAddress != "" || d.jumpoints != nil {
		return false // the operator said where the site is; or only the jumpoints reach it
	}
	addrs, _ := mesh.CoordinatorAddrs(d.site.ID, m.GetAddrs())
	if len(addrs) == 0 {
		d.log.Warn("an order to move to another coordinator without a usable address: ignored")
		return false
	}
	d.mu.Lock()
	d.movedTo = addrs
	d.mu.Unlock()
	d.log.Info("moving to another coordinator", "addrs", addrs, "reason", m.GetReason())
	return true
}

// connectMoved connects to the addresses of a pending move order, and
// only those; the session's dial then finds the connection made. Nothing
// is pending, or that connection failed: the dial goes to every address.
func (d *Daemon) connectMoved(ctx context.Context) {
	d.mu.Lock()
	move := d.movedTo
	d.movedTo = nil
	d.mu.Unlock()
	if len(move) == 0 {
		return
	}
	ps := d.host.Peerstore()
	others := ps.Addrs(d.site.ID)
	_ = d.host.Network().ClosePeer(d.site.ID)
	ps.ClearAddrs(d.site.ID)
	ps.AddAddrs(d.site.ID, move, peerstore.TempAddrTTL)
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	cctx = network.WithForceDirectDial(cctx, "peer moving to another coordinator")
	err := d.host.Connect(cctx, peer.AddrInfo{ID: d.site.ID, Addrs: move})
	// Every address back, the site's for good, whatever the dial did.
	ps.AddAddrs(d.site.ID, others, peerstore.RecentlyConnectedAddrTTL)
	ps.AddAddrs(d.site.ID, d.coordinator().Addrs, peerstore.PermanentAddrTTL)
	if err != nil {
		d.log.Info("the coordinator named in the move did not answer: dialing every address", "error", err)
	}
}
