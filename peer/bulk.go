package peer

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"

	"github.com/jumpmesh/jumpmesh/mesh/channel"
)

// bulkConnections is the site's bulk-connections setting as the
// coordinator's last welcome or update told it: whether this peer may
// offer a forward a bulk connection (mesh/channel/bulk.go) and open the
// listener for it. The peer decides from it, not from the console's
// ForwardOpen.bulk: a console asking for one on a site that turned them
// off gets the channel. It is on until a welcome says off, as for a site
// whose coordinator predates the setting.
type bulkConnections struct {
	off atomic.Bool
	// host is the peer's libp2p host, which asks a relayed session's relay
	// for a splice slot (nil: no relayed bulk connections); unreachable
	// remembers the relays without a reachable splice.
	host        host.Host
	unreachable channel.SpliceMemory
	// asked counts the forwards whose console asked for a bulk
	// connection; offered those this peer made an offer for, each on a
	// bulk listener it held open until the offer was settled, or through
	// its relay's splice (relayed counts these); tests.
	asked, offered, relayed atomic.Int64
}

// on is what serveChannel asks before each forward.
func (b *bulkConnections) on() bool { return !b.off.Load() }

// spliceSlotTimeout bounds the slot request to a relay and the dial of its
// splice listener: a relay without the service, or one that does not
// answer, delays the forward's start by at most this, once per
// channel.SpliceRetryAfter.
const spliceSlotTimeout = 2 * time.Second

// relaySplice asks the relay of ch's relayed connection for a splice slot
// and opens this side's connection to its splice listener
// (mesh/channel/bulkrelay.go); nil when the connection is not relayed or
// the relay has no slot for it (a relay without the service, a refusal,
// an unreachable listener): the forward then stays on its channel.
func (b *bulkConnections) relaySplice(ctx context.Context, ch *channel.Channel) (net.Conn, *channel.BulkRelay) {
	if b == nil || b.host == nil {
		return nil, nil
	}
	relay, ip, ok := channel.RelayHop(ch.Stream().Conn())
	if !ok || b.unreachable.Skip(relay.String()) {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, spliceSlotTimeout)
	defer cancel()
	s, err := b.host.NewStream(network.WithNoDial(ctx, "relay splice slot"), relay, channel.RelayBulkProtocol)
	if err != nil { // a relay without the service, most likely
		b.unreachable.Failed(relay.String())
		return nil, nil
	}
	defer s.Close()
	_ = s.SetDeadline(time.Now().Add(spliceSlotTimeout))
	slot, err := channel.ReadSpliceSlot(s)
	if err != nil {
		return nil, nil
	}
	conn, err := channel.DialSplice(ctx, net.JoinHostPort(ip.String(), strconv.Itoa(slot.Port)), slot.Token, channel.SpliceOfferer, spliceSlotTimeout)
	if err != nil {
		b.unreachable.Failed(relay.String())
		return nil, nil
	}
	return conn, &channel.BulkRelay{Relay: relay.String(), Slot: slot}
}
