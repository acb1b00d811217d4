package console

import (
	"context"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh/channel"
)

// bulkDialTimeout bounds the console's dial of a peer's bulk listener; the
// peer offers one only on an address the console reached it at directly,
// so a dial takes a round trip.
const bulkDialTimeout = time.Second

// Forward carries one local TCP connection over the forward channel ch
// (opened with a ForwardOpen). It first waits for the peer's dial status:
// a target the peer cannot reach comes back as the peer's catalog error
// before any byte of conn is read. When the status offers a bulk
// connection (ForwardOpen.bulk) on the address the console reached the
// peer at, or through the splice of the relay the session goes through,
// Forward connects to it and carries conn's bytes there; if it cannot, it
// tells the peer and carries them on ch. Then bytes flow both
// ways, with half-close, until both directions end (see channel.Splice).
// in counts bytes from the peer to conn, out bytes from conn to the peer.
// Forward closes conn and ch.
func Forward(ctx context.Context, ch *channel.Channel, conn net.Conn) (in, out int64, err error) {
	stop := context.AfterFunc(ctx, func() { _ = ch.Reset() })
	offer, addr, relay, err := ch.ReadStatusBulk()
	if !stop() && ctx.Err() != nil {
		err = ctx.Err()
	}
	if err != nil {
		_ = conn.Close()
		_ = ch.Close()
		return 0, 0, err
	}
	if offer == nil {
		return ch.Splice(ctx, conn)
	}
	var bc *channel.BulkConn
	if relay != nil {
		if bc = dialRelayedBulk(ctx, ch, *offer, relay); bc != nil {
			relayedBulkForwards.Add(1)
		}
	} else if addr != nil {
		bc = dialBulk(ctx, ch, *offer, addr)
	}
	choice := channel.BulkDeclined
	if bc != nil {
		choice = channel.BulkChosen
	}
	if _, err := ch.Write([]byte{choice}); err != nil {
		if bc != nil {
			_ = bc.Close()
		}
		_ = conn.Close()
		_ = ch.Reset()
		return 0, 0, err
	}
	if bc == nil {
		return ch.Splice(ctx, conn)
	}
	// The channel stays open while the bulk connection carries the bytes:
	// the peer ends the bulk connection if it is reset.
	in, out, err = bc.Splice(ctx, conn)
	ch.AddCarried(in, out)
	if err != nil {
		_ = ch.Reset()
	} else {
		_ = ch.Close()
	}
	return in, out, err
}

// bulkForwards counts the forwards carried on bulk connections (tests).
var bulkForwards atomic.Int64

// dialBulk connects to the peer's bulk listener at addr, when that is the
// address the console reached the peer at (no NAT between them, not
// relayed, not through a jumpoint), and opens the bulk connection offered;
// nil when it cannot.
func dialBulk(ctx context.Context, ch *channel.Channel, offer channel.BulkOffer, addr *net.TCPAddr) *channel.BulkConn {
	c := ch.Stream().Conn()
	if c.Stat().Limited {
		return nil
	}
	remote, err := manet.ToIP(c.RemoteMultiaddr())
	if err != nil || !remote.Equal(addr.IP) {
		return nil
	}
	// A connection through a jumpoint's tunnel (mesh/tunnel) has no local
	// address: its bytes must keep going through the jumpoint.
	if local, err := manet.ToIP(c.LocalMultiaddr()); err != nil || local.IsUnspecified() {
		return nil
	}
	d := net.Dialer{Timeout: bulkDialTimeout}
	tc, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return nil
	}
	bc, err := channel.DialBulk(tc, offer)
	if err != nil {
		return nil
	}
	bulkForwards.Add(1)
	return bc
}

// relayedBulkForwards counts the forwards carried on bulk connections
// through a relay's splice (tests).
var relayedBulkForwards atomic.Int64

// unreachableSplices are the relays whose splice this console could not
// reach lately: their offers are declined without a dial.
var unreachableSplices channel.SpliceMemory

// dialRelayedBulk connects to the splice listener of the relay ch's
// connection goes through, when that is the relay the peer's offer names,
// on the address the console reached the relay at, and opens the bulk
// connection offered through it (mesh/channel/bulkrelay.go); nil when it
// cannot. The relay copies ciphertext only: the hello proves both ends
// hold the offer's secret, so a relay that pairs the console with anyone
// else gives an error here, not a connection.
func dialRelayedBulk(ctx context.Context, ch *channel.Channel, offer channel.BulkOffer, r *channel.BulkRelay) *channel.BulkConn {
	relay, ip, ok := channel.RelayHop(ch.Stream().Conn())
	if !ok || relay.String() != r.Relay || unreachableSplices.Skip(r.Relay) {
		return nil
	}
	addr := net.JoinHostPort(ip.String(), strconv.Itoa(r.Slot.Port))
	tc, err := channel.DialSplice(ctx, addr, r.Slot.Token, channel.SpliceDialer, bulkDialTimeout)
	if err != nil {
		unreachableSplices.Failed(r.Relay)
		return nil
	}
	bc, err := channel.DialBulk(tc, offer)
	if err != nil {
		return nil
	}
	return bc
}

// AllowBulkSwitch lets the exec or file channel ch, opened with channel.Open
// (Jump.Open does this itself), move to a bulk connection through its
// relay's splice when the peer offers one (mesh/channel/bulkswitch.go):
// the console dials it as for a relayed forward.
func AllowBulkSwitch(ch *channel.Channel) {
	ch.SetBulkDialer(func(ctx context.Context, o channel.BulkOffer, r *channel.BulkRelay) *channel.BulkConn {
		return dialRelayedBulk(ctx, ch, o, r)
	})
}
