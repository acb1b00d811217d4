package channel

import (
	"context"
	"encoding/binary"
	"errors"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// A bulk switch moves an exec or file channel of a relayed session, while
// it runs, from the circuit inside the relay's libp2p connections to a
// bulk connection through the relay's splice (doc.go, "Relayed sessions
// through the splice"). The channel's frames are the same on both; each
// direction moves at its own marker, so nothing is lost or duplicated.

// bulkSwitch is a channel's switch state.
type bulkSwitch struct {
	console bool

	mu sync.Mutex
	bc *BulkConn // this side's bulk connection, once it has it
	// ended: the channel was closed or reset; a bulk connection arriving
	// now is closed.
	ended bool
	// offered: console, an offer came; peer, it sent one.
	offered bool
	// answered: peer, the console chose or declined.
	answered bool
	// switched: this side reads from bc (the other side's marker came).
	switched bool
	// rdl is the channel's read deadline (SetReadDeadline), which bc
	// gets when it arrives.
	rdl time.Time

	// console: dial opens the offered bulk connection (SetBulkDialer);
	// ctx ends with the channel.
	dial   func(context.Context, BulkOffer, *BulkRelay) *BulkConn
	ctx    context.Context
	cancel context.CancelFunc
	// note, console: sees a line when the channel moved or stayed
	// (SetBulkNote).
	note func(string)

	// peer: got delivers the bulk connection the console opens; settle is
	// called once, with it (nil: declined, or never arrived); done is
	// closed when the channel ends, wdone when its write side closes.
	got    <-chan *BulkConn
	settle func(*BulkConn)
	done   chan struct{}
	wdone  chan struct{}
}

// switchOpen is the protocol and open for an open to p: an exec or file
// open (switchable) on a relayed connection to a peer whose identify lists
// ProtocolBulkSwitch asks for the switch on that protocol; otherwise base
// and open as given.
func switchOpen(h host.Host, p peer.ID, base protocol.ID, open *pb.ChannelOpen) (protocol.ID, *pb.ChannelOpen) {
	if !switchable(open) || !relayedTo(h, p) {
		return base, open
	}
	if ok, err := h.Peerstore().SupportsProtocols(p, ProtocolBulkSwitch); err != nil || len(ok) == 0 {
		return base, open
	}
	open = proto.CloneOf(open)
	open.BulkSwitch = true
	return ProtocolBulkSwitch, open
}

// switchable: the kinds of channel that may switch, those whose every
// frame is a message (a forward's raw bytes have bulk connections of their
// own, bulk.go).
func switchable(open *pb.ChannelOpen) bool {
	return open.GetExec() != nil || open.GetFile() != nil
}

// relayedTo reports whether h's connections to p all go through a relay
// (the swarm prefers a direct one when there is one).
func relayedTo(h host.Host, p peer.ID) bool {
	conns := h.Network().ConnsToPeer(p)
	for _, c := range conns {
		if _, _, ok := RelayHop(c); !ok {
			return false
		}
	}
	return len(conns) > 0
}

// consoleSwitch arms the console's side of a switch when its open asked
// for one: from then on an empty frame is the switch's.
func (c *Channel) consoleSwitch(open *pb.ChannelOpen) {
	if !open.GetBulkSwitch() {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	c.sw = &bulkSwitch{console: true, ctx: ctx, cancel: cancel}
}

// AsksBulkSwitch reports whether the console asked, in its open on st, to
// switch to a bulk connection: bulk_switch on ProtocolBulkSwitch (on
// another protocol the field is ignored).
func (c *Channel) AsksBulkSwitch(open *pb.ChannelOpen) bool {
	return open.GetBulkSwitch() && switchable(open) && c.st.Protocol() == ProtocolBulkSwitch
}

// ArmBulkSwitch arms the peer's side of a switch the console asked for
// (AsksBulkSwitch), after Ready and before the channel's frames are read:
// from then on an empty frame is the switch's. The peer need not offer.
func (c *Channel) ArmBulkSwitch() {
	c.sw = &bulkSwitch{done: make(chan struct{}), wdone: make(chan struct{})}
}

// When a switch can pay (WaitBulkWorth): it costs the peer a slot request
// to the relay and both ends a TCP dial to its splice, a few round trips
// and a slot held on the relay, which a command that ends at once never
// uses (issue 17: a relayed `jump H -- true` asked for one).
const (
	// BulkSwitchAfterBytes: a channel that has carried this much either
	// way is bulk (2 ms of a circuit at 130 MB/s): offered at once.
	BulkSwitchAfterBytes = 256 << 10
	// BulkSwitchAfter: a channel still running after this is offered
	// whatever it carried (a shell's keystrokes cost the relay less
	// through the splice too). The peer waits this long.
	BulkSwitchAfter = 50 * time.Millisecond
	// bulkWorthPoll is how often WaitBulkWorth looks at the byte counts.
	bulkWorthPoll = 2 * time.Millisecond
)

// WaitBulkWorth (peer) waits until a switch of the armed channel
// (ArmBulkSwitch) can pay: true once the channel has carried
// BulkSwitchAfterBytes or still runs after wait (BulkSwitchAfter unless a
// test says otherwise); false, and at once, when this side's write
// direction closes first (an exec's exit status is its last frame:
// nothing is left to carry), the channel ends or ctx ends. The peer asks
// its relay for a slot only after true.
func (c *Channel) WaitBulkWorth(ctx context.Context, wait time.Duration) bool {
	sw := c.sw
	if sw == nil || sw.console {
		return false
	}
	after := time.NewTimer(wait)
	defer after.Stop()
	poll := time.NewTicker(bulkWorthPoll)
	defer poll.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-sw.done:
			return false
		case <-sw.wdone:
			return false
		default:
		}
		if c.nread.Load()+c.nwrite.Load() >= BulkSwitchAfterBytes {
			return true
		}
		select {
		case <-ctx.Done():
		case <-sw.done:
		case <-sw.wdone:
		case <-after.C:
			return true
		case <-poll.C:
		}
	}
}

// SetBulkDialer sets how the console opens the bulk connection a peer
// offers on a channel that asked for a switch (the console package's
// splice dial); without one, an offer is declined. Call it before the
// first ReadMsg after Open. It does nothing on other channels.
func (c *Channel) SetBulkDialer(dial func(context.Context, BulkOffer, *BulkRelay) *BulkConn) {
	if c.sw != nil && c.sw.console {
		c.sw.mu.Lock()
		c.sw.dial = dial
		c.sw.mu.Unlock()
	}
}

// Lines a console's note sees (SetBulkNote).
const (
	NoteBulkSwitched = "the session moved to the relay's splice"
	NoteBulkDeclined = "the relay's splice could not be reached: the session stays in the relay's circuit"
)

// SetBulkNote makes note see, on the console, NoteBulkSwitched when the
// channel moved to the bulk connection and NoteBulkDeclined when it
// declined the peer's offer (jump -v prints them). It does nothing on a
// channel that did not ask for a switch.
func (c *Channel) SetBulkNote(note func(string)) {
	if c.sw != nil && c.sw.console {
		c.sw.mu.Lock()
		c.sw.note = note
		c.sw.mu.Unlock()
	}
}

// tell passes line to the console's note, if any.
func (sw *bulkSwitch) tell(line string) {
	sw.mu.Lock()
	note := sw.note
	sw.mu.Unlock()
	if note != nil {
		note(line)
	}
}

// OfferBulkSwitch sends the console a relayed bulk offer o through r, on
// an armed channel (ArmBulkSwitch): got delivers the connection the
// console opens with it (channel.AcceptBulk on the peer's splice
// connection), settle is called once when the offer is settled, with the
// connection taken or nil. False when no offer was sent (the channel
// ended, its write side closed, or an offer was sent already); settle has
// then been called with nil.
func (c *Channel) OfferBulkSwitch(o BulkOffer, r BulkRelay, got <-chan *BulkConn, settle func(*BulkConn)) bool {
	sw := c.sw
	if sw == nil || sw.console {
		settle(nil)
		return false
	}
	sw.mu.Lock()
	if sw.ended || sw.offered {
		sw.mu.Unlock()
		settle(nil)
		return false
	}
	sw.offered, sw.got, sw.settle = true, got, settle
	sw.mu.Unlock()
	c.wmu.Lock()
	err := errors.New("write side closed")
	if !c.wclosed {
		err = c.writeSwitchLocked(&pb.BulkSwitch{Step: &pb.BulkSwitch_Offer{Offer: bulkRelayOfferPB(o, r)}})
	}
	c.wmu.Unlock()
	if err != nil {
		sw.settleOnce(nil)
		return false
	}
	return true
}

// BulkSwitched reports whether this side reads from a bulk connection
// (the other side's marker came).
func (c *Channel) BulkSwitched() bool {
	if c.sw == nil {
		return false
	}
	c.sw.mu.Lock()
	defer c.sw.mu.Unlock()
	return c.sw.switched
}

// writeSwitchLocked writes the switch message m, after its empty frame, in
// one write on the stream (never on the bulk connection). c.wmu is held.
func (c *Channel) writeSwitchLocked(m *pb.BulkSwitch) error {
	buf := append(c.wbuf[:0], 0)
	buf = binary.AppendUvarint(buf, uint64(proto.Size(m)))
	buf, err := proto.MarshalOptions{}.MarshalAppend(buf, m)
	if err != nil {
		return err
	}
	c.wbuf = buf
	n, err := c.st.Write(buf)
	c.nwrite.Add(uint64(n))
	return err
}

// writer is where this side's frames go: the bulk connection after its
// marker, the stream before. c.wmu is held.
func (c *Channel) writer() interface{ Write([]byte) (int, error) } {
	if c.wbulk != nil {
		return c.wbulk
	}
	return c.st
}

func switchError(format string, a ...any) error {
	return catalog.Errorf(catalog.CodeProtocol, "(bulk switch: "+format+")", a...)
}

// readSwitch reads and acts on the switch message after an empty frame.
func (c *Channel) readSwitch() error {
	buf, err := c.readFrame()
	if err != nil {
		return noEOF(err)
	}
	var m pb.BulkSwitch
	if err := proto.Unmarshal(buf, &m); err != nil {
		return catalog.Errorf(catalog.CodeProtocol, "(%T: %w)", &m, err)
	}
	if c.rbulk != nil {
		return switchError("a switch message after the switch")
	}
	sw := c.sw
	switch s := m.GetStep().(type) {
	case *pb.BulkSwitch_Offer:
		if !sw.console {
			return switchError("an offer from the console")
		}
		return c.takeOffer(s.Offer)
	case *pb.BulkSwitch_Switched:
		sw.mu.Lock()
		bc := sw.bc
		sw.switched = bc != nil
		sw.mu.Unlock()
		if !sw.console || bc == nil {
			return switchError("a switch to a bulk connection this side did not choose")
		}
		c.rbulk = bc
		sw.tell(NoteBulkSwitched)
	case *pb.BulkSwitch_Chosen:
		if sw.console {
			return switchError("a choice from the peer")
		}
		return c.peerSwitch()
	case *pb.BulkSwitch_Declined:
		sw.mu.Lock()
		ok := !sw.console && sw.offered && !sw.answered
		sw.answered = true
		sw.mu.Unlock()
		if !ok {
			return switchError("a refusal of no offer")
		}
		sw.settleOnce(nil)
	default:
		return switchError("an unknown step")
	}
	return nil
}

// takeOffer (console) opens the offered bulk connection in the background
// and then writes the choice: the session's frames flow on meanwhile. A
// second offer is a protocol error.
func (c *Channel) takeOffer(b *pb.BulkOffer) error {
	sw := c.sw
	sw.mu.Lock()
	again, dial := sw.offered, sw.dial
	sw.offered = true
	sw.mu.Unlock()
	if again {
		return switchError("a second offer")
	}
	o, _, r := bulkOfferFromPB(b)
	go func() {
		var bc *BulkConn
		if o != nil && r != nil && dial != nil {
			bc = dial(sw.ctx, *o, r)
		}
		if !c.choose(bc) {
			sw.tell(NoteBulkDeclined)
		}
	}()
	return nil
}

// choose (console) writes the switch marker and moves this side's writes
// to bc, or declines when bc is nil or the channel ended meanwhile; false
// when it declined an offer of a channel still running.
func (c *Channel) choose(bc *BulkConn) bool {
	sw := c.sw
	c.wmu.Lock()
	defer c.wmu.Unlock()
	sw.mu.Lock()
	ended := sw.ended || c.wclosed
	if bc != nil && !ended {
		sw.setConn(bc)
	}
	sw.mu.Unlock()
	if bc != nil && ended {
		_ = bc.Close()
		return true
	}
	if ended {
		return true
	}
	if bc == nil {
		_ = c.writeSwitchLocked(&pb.BulkSwitch{Step: &pb.BulkSwitch_Declined{Declined: true}})
		return false
	}
	if err := c.writeSwitchLocked(&pb.BulkSwitch{Step: &pb.BulkSwitch_Chosen{Chosen: true}}); err != nil {
		return true // the stream is broken: the session ends anyway
	}
	c.wbulk = bc
	return true
}

// peerSwitch (peer) takes the bulk connection the console chose: reads
// come from it now, and after this side's marker, writes go to it (none
// when the write side was closed: its last frame went on the stream).
func (c *Channel) peerSwitch() error {
	sw := c.sw
	sw.mu.Lock()
	ok := sw.offered && !sw.answered
	sw.answered = true
	got := sw.got
	sw.mu.Unlock()
	if !ok {
		return switchError("a choice of no offer")
	}
	var bc *BulkConn
	t := time.NewTimer(BulkHandshakeTimeout)
	select {
	case bc = <-got:
	case <-t.C:
	case <-sw.done:
	}
	t.Stop()
	sw.settleOnce(bc)
	if bc == nil {
		return catalog.Errorf(catalog.CodeSessionInternal, "(the console chose a bulk connection that did not arrive)")
	}
	sw.mu.Lock()
	ended := sw.ended
	if !ended {
		sw.setConn(bc)
		sw.switched = true
	}
	sw.mu.Unlock()
	if ended {
		_ = bc.Close()
		return catalog.Errorf(catalog.CodeSessionInternal, "(the channel ended during the switch)")
	}
	c.rbulk = bc
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if !c.wclosed && c.writeSwitchLocked(&pb.BulkSwitch{Step: &pb.BulkSwitch_Switched{Switched: true}}) == nil {
		c.wbulk = bc
	}
	return nil
}

// settleOnce calls the peer's settle once.
func (sw *bulkSwitch) settleOnce(bc *BulkConn) {
	sw.mu.Lock()
	f := sw.settle
	sw.settle = nil
	sw.mu.Unlock()
	if f != nil {
		f(bc)
	}
}

// closeWriteSwitch ends this side's direction on the bulk connection (its
// end frame) when it writes there, and on the stream.
func (c *Channel) closeWriteSwitch() error {
	c.wmu.Lock()
	if !c.wclosed && c.sw.wdone != nil {
		close(c.sw.wdone)
	}
	c.wclosed = true
	var err error
	if c.wbulk != nil {
		err = c.wbulk.CloseWrite()
	}
	c.wmu.Unlock()
	return errors.Join(err, c.st.CloseWrite())
}

// endSwitch closes the bulk connection of a switch, settles an offer not
// settled and stops a dial in progress.
func (c *Channel) endSwitch() {
	sw := c.sw
	if sw == nil {
		return
	}
	sw.mu.Lock()
	first := !sw.ended
	sw.ended = true
	bc := sw.bc
	sw.mu.Unlock()
	if !first {
		return
	}
	if sw.console {
		sw.cancel()
	} else {
		close(sw.done)
		sw.settleOnce(nil)
	}
	if bc != nil {
		_ = bc.Close()
	}
}

func (sw *bulkSwitch) setReadDeadline(t time.Time) {
	sw.mu.Lock()
	defer sw.mu.Unlock()
	sw.rdl = t
	if sw.bc != nil {
		_ = sw.bc.conn.SetReadDeadline(t)
	}
}

// setConn makes bc this side's bulk connection, with the channel's read
// deadline (a peer whose session ended waits for the console's end only
// so long, on whichever path it reads). sw.mu is held.
func (sw *bulkSwitch) setConn(bc *BulkConn) {
	sw.bc = bc
	if !sw.rdl.IsZero() {
		_ = bc.conn.SetReadDeadline(sw.rdl)
	}
}
