package peer

import "sync/atomic"

// bulkConnections is the site's bulk-connections setting as the
// coordinator's last welcome or update told it: whether this peer may
// offer a forward a bulk connection (mesh/channel/bulk.go) and open the
// listener for it. The peer decides from it, not from the console's
// ForwardOpen.bulk: a console asking for one on a site that turned them
// off gets the channel. It is on until a welcome says off, as for a site
// whose coordinator predates the setting.
type bulkConnections struct {
	off atomic.Bool
	// asked counts the forwards whose console asked for a bulk
	// connection; offered those this peer made an offer for, each on a
	// bulk listener it held open until the offer was settled (tests).
	asked, offered atomic.Int64
}

// on is what serveChannel asks before each forward.
func (b *bulkConnections) on() bool { return !b.off.Load() }
