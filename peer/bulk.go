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
	"github.com/jumpmesh/jumpmesh/mesh/pb"
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
	// its relay's splice (relayed counts these); switches the exec
	// channels offered a switch to one (offerSwitch), switched those that
	// moved to it; tests.
	asked, offered, relayed, switches, switched atomic.Int64
	// slotAsks counts the exec and file channels for which this peer
	// asked its relay for a splice slot (offerSwitch); tests.
	slotAsks atomic.Int64
	// switchAfter, when set (tests), replaces channel.BulkSwitchAfter.
	switchAfter atomic.Int64
	// slotHook, when set, sees each splice slot this peer connected to
	// (tests: a stranger racing the console to it).
	slotHook atomic.Pointer[func(addr string, slot channel.SpliceSlot)]
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
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(slot.Port))
	conn, err := channel.DialSplice(ctx, addr, slot.Token, channel.SpliceOfferer, spliceSlotTimeout)
	if err != nil {
		b.unreachable.Failed(relay.String())
		return nil, nil
	}
	if f := b.slotHook.Load(); f != nil {
		(*f)(addr, slot)
	}
	return conn, &channel.BulkRelay{Relay: relay.String(), Slot: slot}
}

// acceptRelayed makes a bulk offer for the splice connection sc (on a
// relay's slot) and accepts the console's connection on it in the
// background: got delivers it, or nil when what arrived on sc was not it
// (a stranger racing the console to the slot cannot make the hello).
func acceptRelayed(sc net.Conn) (channel.BulkOffer, <-chan *channel.BulkConn) {
	o := channel.NewBulkOffer()
	offers := &channel.BulkOffers{}
	offers.Add(o, 2*channel.BulkHandshakeTimeout)
	got := make(chan *channel.BulkConn, 1)
	go func() {
		bc, err := channel.AcceptBulk(sc, offers) // closes sc on error
		if err != nil {
			bc = nil
		}
		got <- bc
	}()
	return o, got
}

// ServeExecWithRelays is ServeExec on a peer whose host h may ask the
// relay of a relayed session for a splice slot (as ServeForwardWithRelays):
// an exec channel whose console asked for the switch moves to a bulk
// connection through the relay's splice (offerSwitch).
func ServeExecWithRelays(ctx context.Context, ch *channel.Channel, open *pb.ChannelOpen, h host.Host) *pb.ExitStatus {
	if ch.AsksBulkSwitch(open) {
		ch.ArmBulkSwitch()
		go (&bulkConnections{host: h}).offerSwitch(ctx, ch)
	}
	return ServeExec(ctx, ch, open.GetExec(), ExecOptions{})
}

// offerSwitch offers the console of a relayed exec or file channel that
// asked for it (channel.Channel.AsksBulkSwitch, armed by the caller) a
// bulk connection through the relay's splice, when the site allows bulk
// connections, the channel is worth it (channel.Channel.WaitBulkWorth: it
// carries bulk or still runs; a command that ends at once asks the relay
// for nothing) and the relay gives a slot; otherwise the channel stays on
// the circuit and nothing is sent. The session runs on the channel
// meanwhile: the switch happens when the console has the connection
// (mesh/channel/bulkswitch.go).
func (b *bulkConnections) offerSwitch(ctx context.Context, ch *channel.Channel) {
	wait := channel.BulkSwitchAfter
	if w := b.switchAfter.Load(); w > 0 {
		wait = time.Duration(w)
	}
	if !b.on() || !ch.WaitBulkWorth(ctx, wait) {
		return
	}
	b.slotAsks.Add(1)
	sc, r := b.relaySplice(ctx, ch)
	if sc == nil {
		return
	}
	o, got := acceptRelayed(sc)
	settle := func(bc *channel.BulkConn) {
		if bc == nil { // declined, not arrived or the channel ended: AcceptBulk ends
			_ = sc.Close()
		}
	}
	if ch.OfferBulkSwitch(o, *r, got, settle) {
		b.switches.Add(1)
	}
}
