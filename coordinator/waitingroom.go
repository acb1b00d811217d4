package coordinator

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/core/sec"
	tptu "github.com/libp2p/go-libp2p/p2p/net/upgrader"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// The handshake gate's waiting room and places (handshakes.go says why):
// libp2p's accept loop counts each inbound TCP connection in the room
// (enterRoom), the connection's security handshake waits for a place
// (gatedSecurity, awaitPlace), first come first served, and ends it
// (place.end). The accept loop also waits while the connections it took
// and that are not yet identified (pending, whether they still count in
// the room or not) fill the resource manager's bound on them, so that
// none it takes is refused there.

const (
	// The waiting room holds what the gate serves in gateRoomWait, at
	// least gateRoomMin connections, within the resource manager's
	// transient bound (Resources.MaxHandshakes). libp2p's
	// upgrader gives an inbound connection 15 s from accept to the end
	// of its handshakes, waiting included; gateRoomWait leaves the rest
	// for a rate that drops meanwhile. gateRoomMin is what a cold gate
	// (no rate yet: a restarted coordinator's storm) takes: at 150
	// handshakes a second (2 cores shared with a fleet) ~7 s.
	gateRoomWait = 8 * time.Second
	gateRoomMin  = 1024
	// gateTransientSpare of the resource manager's transient connections
	// are left to others than the room: QUIC's handshakes, the lane's,
	// outbound dials.
	gateTransientSpare = 64
	// gateRoomGrace is how long a connection counts in the room before its
	// security handshake starts: a peer's starts within a round trip, a
	// stranger who connects and sends nothing takes a room's space for
	// this long, not for the upgrader's 15 s.
	gateRoomGrace = time.Second
	// gateNegotiation is how long an inbound TCP connection has, from
	// leaving the accept loop (the room's wait for space not counted), to
	// choose its security protocol: multistream-select's two lines, which
	// a libp2p dialer sends as it connects (one round trip, two TCP
	// retransmissions on a lossy link). A stranger who connects and sends
	// nothing, or a byte at a time, is closed then instead of holding one
	// of the resource manager's transient connections
	// (Resources.MaxHandshakes) for the upgrader's 15 s. The security
	// handshake itself runs on the upgrader's clock (gatedSecurity lifts
	// this deadline as it starts). 10 s, not 5: in `sim scale` restarts
	// of 20,000 peers on two cores, a peer's connection took up to 4.9 s
	// from here to its security handshake (its fleet process starved,
	// the coordinator's accept loop busy), and a cut peer backs off; a
	// stranger still holds a connection two thirds of the upgrader's time.
	gateNegotiation = 10 * time.Second
)

// noteAccepted keeps a TCP connection the gater let through for
// startNegotiation, which OpenConnection calls next on the same accept
// loop. Others (QUIC's) are not kept.
func (g *handshakeGate) noteAccepted(c network.ConnMultiaddrs) {
	nc, ok := c.(net.Conn)
	if !ok || !isTCP(c.LocalMultiaddr()) {
		return
	}
	k := string(c.RemoteMultiaddr().Bytes())
	g.mu.Lock()
	g.accepted[k] = append(g.accepted[k], nc)
	g.mu.Unlock()
}

// startNegotiation gives the connection from remote that the gater noted
// gateNegotiation to choose its security protocol, as a read deadline.
func (g *handshakeGate) startNegotiation(remote ma.Multiaddr) {
	if remote == nil {
		return
	}
	k := string(remote.Bytes())
	g.mu.Lock()
	cs := g.accepted[k]
	if len(cs) == 0 {
		g.mu.Unlock()
		return
	}
	nc := cs[0]
	if len(cs) == 1 {
		delete(g.accepted, k)
	} else {
		g.accepted[k] = cs[1:]
	}
	g.mu.Unlock()
	_ = nc.SetReadDeadline(time.Now().Add(gateNegotiation))
}

// enterRoom waits, on libp2p's accept loop, until the waiting room has
// space, and counts the connection in it as fresh; it does not wait once
// the gate is closed. While it waits, the connections behind it stay in
// the kernel's accept queue.
func (g *handshakeGate) enterRoom() {
	g.mu.Lock()
	defer g.mu.Unlock()
	full := func() bool {
		return !g.closed && (g.roomLocked(time.Now()) >= g.roomCapLocked() || g.pendingFullLocked())
	}
	if full() {
		g.roomFull++
	}
	for full() {
		if len(g.fresh) > 0 {
			// The oldest fresh one leaves at its grace's end, which
			// nothing else may announce.
			t := time.AfterFunc(time.Until(g.fresh[0].Add(gateRoomGrace)), func() {
				g.mu.Lock()
				g.cond.Broadcast()
				g.mu.Unlock()
			})
			g.cond.Wait()
			t.Stop()
			continue
		}
		g.cond.Wait()
	}
	g.fresh = append(g.fresh, time.Now())
	g.pending++
	g.roomPeak = max(g.roomPeak, len(g.fresh)+g.queued)
}

// pendingFullLocked tells whether the main port's connections not yet
// identified and the lane's hold the resource manager's transient bound,
// less gateTransientSpare (a quarter of a small bound: tests, tiny
// configurations), at least one.
func (g *handshakeGate) pendingFullLocked() bool {
	return g.pending+g.laneInFlight >= max(1, g.transient-min(gateTransientSpare, g.transient/4))
}

// roomLocked counts the room: the fresh connections accepted within
// gateRoomGrace, and the queue.
func (g *handshakeGate) roomLocked(now time.Time) int {
	n := 0
	for n < len(g.fresh) && now.Sub(g.fresh[n]) > gateRoomGrace {
		n++
	}
	if n > 0 {
		g.fresh = append(g.fresh[:0], g.fresh[n:]...)
	}
	return len(g.fresh) + g.queued
}

// roomCapLocked is how many connections the room holds: what the gate
// served in gateRoomWait at the rate it last served with a queue waiting,
// at least gateRoomMin, within the resource manager's transient bound
// less the places and gateTransientSpare; at least one.
func (g *handshakeGate) roomCapLocked() int {
	c := max(gateRoomMin, int(g.rate*gateRoomWait.Seconds()))
	return max(1, min(c, g.transient-g.inFlight-g.laneInFlight-gateTransientSpare))
}

// awaitPlace waits, as the security handshake of an inbound TCP connection
// accepted at local starts (gatedSecurity), for a place of the bound,
// first come first served, and takes the connection's count in the room
// from fresh to the queue. A connection of the members' lane holds its
// place already and does not wait; nor does any once the gate is closed
// (nil place). The caller ends the place once the handshake ends
// (place.end). The error is ctx's: the upgrader's accept timeout passed,
// or the listener closed.
func (g *handshakeGate) awaitPlace(ctx context.Context, local ma.Multiaddr) (*place, error) {
	if g.lane != nil && local != nil && g.lane.onLane(local) {
		return nil, nil
	}
	g.mu.Lock()
	if g.roomLocked(time.Now()) > g.queued {
		// Its own count or, past its grace, an older one's: the room's
		// count is by number, not by connection.
		g.fresh = g.fresh[1:]
	}
	if g.closed {
		g.mu.Unlock()
		return nil, nil
	}
	pl := &place{gate: g}
	if !g.placesTakenLocked() && g.queued == 0 {
		g.placeLocked(pl)
		g.cond.Broadcast() // the room has space
		g.mu.Unlock()
		return pl, nil
	}
	pl.state = placeQueued
	pl.given = make(chan struct{})
	g.queue = append(g.queue, pl)
	g.queued++
	g.waited++
	g.mu.Unlock()
	select {
	case <-pl.given:
		g.mu.Lock()
		defer g.mu.Unlock()
		if pl.state == placeFree {
			return nil, nil // the gate closed
		}
		return pl, nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	queued := pl.state == placeQueued
	if queued {
		// Still in the queue: it leaves it (dispatchLocked skips it).
		pl.state = placeFree
		g.queued--
		g.timedOut++
		g.cond.Broadcast() // the room has space
	}
	g.mu.Unlock()
	if !queued {
		pl.end(false) // given meanwhile
	}
	return nil, ctx.Err()
}

// dispatchLocked gives the free places to the queue, in order; once the
// gate is closed, everyone in the queue passes without one.
func (g *handshakeGate) dispatchLocked() {
	gave := false
	for len(g.queue) > 0 {
		pl := g.queue[0]
		if pl.state != placeQueued {
			g.queue[0] = nil
			g.queue = g.queue[1:]
			continue
		}
		if !g.closed && g.placesTakenLocked() {
			break
		}
		g.queue[0] = nil
		g.queue = g.queue[1:]
		g.queued--
		if g.closed {
			pl.state = placeFree
		} else {
			g.placeLocked(pl)
		}
		close(pl.given)
		gave = true
	}
	if gave {
		g.cond.Broadcast() // the room has space
	}
}

// placeLocked gives pl a place: its hold starts.
func (g *handshakeGate) placeLocked(pl *place) {
	if !pl.lane {
		g.inFlight++
	}
	pl.state = placeHeld
	pl.start = time.Now()
	pl.timer = time.AfterFunc(g.holdForLocked(), pl.heldTooLong)
}

// countServed counts a completed handshake and, every second, takes the
// rate at which they completed as what the gate can serve when
// connections waited meanwhile (else the second shows what was asked,
// which only raises the estimate). A gap of seconds without one starts
// afresh. Under mu.
func (g *handshakeGate) countServed(now time.Time) {
	g.served++
	elapsed := now.Sub(g.servedAt)
	switch {
	case elapsed > 2*time.Second:
		g.served, g.servedAt = 1, now
	case elapsed >= time.Second:
		r := float64(g.served) / elapsed.Seconds()
		if g.queued > 0 && g.rate > 0 {
			g.rate = 0.7*g.rate + 0.3*r
		} else {
			g.rate = max(g.rate, r)
		}
		g.served, g.servedAt = 0, now
	}
}

// place is a connection's claim on a place of the bound (awaitPlace) or
// of the members' lane (OpenConnection): queued, then held until the
// handshake ends or its hold passes.
type place struct {
	gate *handshakeGate
	lane bool
	// Under gate.mu: state; start, when it got its place; timer, its
	// hold; given is closed when a queued place is given (or the gate
	// closes).
	state placeState
	start time.Time
	timer *time.Timer
	given chan struct{}
	// ended: end was called.
	ended bool
}

type placeState int

const (
	placeFree placeState = iota
	placeQueued
	placeHeld
)

// heldTooLong: the handshake goes on without its place.
func (pl *place) heldTooLong() {
	g := pl.gate
	g.mu.Lock()
	defer g.mu.Unlock()
	if pl.state == placeHeld {
		pl.state = placeFree
		g.releaseLocked(pl.lane)
	}
}

// end gives the place back as the handshake ends; only its first call
// counts. Identified, its time is a sample — also past its hold: the slow
// ones are what shrinks the bound.
func (pl *place) end(identified bool) {
	g := pl.gate
	g.mu.Lock()
	if pl.ended {
		g.mu.Unlock()
		return
	}
	pl.ended = true
	if pl.state == placeHeld {
		pl.timer.Stop()
		g.releaseLocked(pl.lane)
	}
	pl.state = placeFree
	start := pl.start
	if !identified && !start.IsZero() {
		g.unidentified++
	}
	g.mu.Unlock()
	if identified && !start.IsZero() {
		g.sample(max(time.Since(start), time.Microsecond))
	}
}

// gatedSecurity is a security transport whose inbound handshakes each
// wait for a place of the gate first (awaitPlace).
type gatedSecurity struct {
	sec.SecureTransport
	gate *handshakeGate
}

func (t *gatedSecurity) SecureInbound(ctx context.Context, insecure net.Conn, p peer.ID) (sec.SecureConn, error) {
	// The protocol is chosen: from here the upgrader's clock runs alone
	// (startNegotiation's deadline lifted).
	_ = insecure.SetReadDeadline(time.Time{})
	var local ma.Multiaddr
	if c, ok := insecure.(manet.Conn); ok {
		local = c.LocalMultiaddr()
	}
	pl, err := t.gate.awaitPlace(ctx, local)
	if err != nil {
		return nil, err
	}
	conn, err := t.SecureTransport.SecureInbound(ctx, insecure, p)
	if pl != nil {
		pl.end(err == nil)
	}
	return conn, err
}

// securityOption makes the host's TLS and Noise transports wait at the gate
// (gatedSecurity); it comes after mesh.NewHost's options, whose security
// transports it replaces one for one, in order.
func (g *handshakeGate) securityOption() libp2p.Option {
	return func(cfg *libp2p.Config) error {
		for i, s := range cfg.SecurityTransports {
			switch s.ID {
			case libp2ptls.ID:
				cfg.SecurityTransports[i].Constructor = func(id protocol.ID, key crypto.PrivKey, muxers []tptu.StreamMuxer) (*gatedSecurity, error) {
					t, err := libp2ptls.New(id, key, muxers)
					if err != nil {
						return nil, err
					}
					return &gatedSecurity{SecureTransport: t, gate: g}, nil
				}
			case noise.ID:
				cfg.SecurityTransports[i].Constructor = func(id protocol.ID, key crypto.PrivKey, muxers []tptu.StreamMuxer) (*gatedSecurity, error) {
					t, err := noise.New(id, key, muxers)
					if err != nil {
						return nil, err
					}
					return &gatedSecurity{SecureTransport: t, gate: g}, nil
				}
			default:
				return fmt.Errorf("the handshake gate cannot wrap the security transport %s", s.ID)
			}
		}
		return nil
	}
}
