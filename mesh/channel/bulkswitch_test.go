package channel

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// The bulk switch's own tests: two real hosts, a stream of
// ProtocolBulkSwitch, and a bulk connection through a "relay" the test
// controls (a TCP proxy that may corrupt or cut what it carries). The
// relayed sessions end to end (a real relay, peer and console) are in the
// peer package.

// switchPair is a console channel whose open asked for the switch and the
// peer's, armed; asked false leaves the console's unarmed (an open that
// did not ask).
func switchPair(t *testing.T, asked bool) (con, per *Channel) {
	t.Helper()
	ph, chh := newHost(t), newHost(t)
	got := make(chan *Channel, 1)
	ph.SetStreamHandler(ProtocolBulkSwitch, func(st network.Stream) { got <- newChannel(st) })
	ctx := openCtx(t)
	if err := chh.Connect(ctx, peer.AddrInfo{ID: ph.ID(), Addrs: ph.Addrs()}); err != nil {
		t.Fatal(err)
	}
	st, err := chh.NewStream(ctx, ph.ID(), ProtocolBulkSwitch)
	if err != nil {
		t.Fatal(err)
	}
	con = newChannel(st)
	if asked {
		con.consoleSwitch(&pb.ChannelOpen{BulkSwitch: true, Kind: &pb.ChannelOpen_Exec{Exec: &pb.ExecOpen{}}})
	}
	if err := con.WriteMsg(&pb.ExecMsg{Body: &pb.ExecMsg_Stdin{Stdin: []byte("open")}}); err != nil {
		t.Fatal(err)
	}
	select {
	case per = <-got:
	case <-ctx.Done():
		t.Fatal("no stream")
	}
	per.ArmBulkSwitch()
	var m pb.ExecMsg
	if err := per.ReadMsg(&m); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = con.Reset(); _ = per.Reset() })
	return con, per
}

// testRelay is the test's splice: it pairs the console's and the peer's
// TCP connections and copies between them, calling tamper on each chunk
// from the peer (with the count of bytes before it); tamper returns false
// to cut both connections.
type testRelay struct {
	consoleEnd, peerEnd net.Conn // the sides' ends
	wg                  sync.WaitGroup
}

func newTestRelay(t *testing.T, tamper func(off int, p []byte) bool) *testRelay {
	c, rc := tcpPair(t)
	rp, p := tcpPair(t)
	r := &testRelay{consoleEnd: c, peerEnd: p}
	r.wg.Go(func() { _, _ = io.Copy(rp, rc); _ = rp.CloseWrite() })
	r.wg.Go(func() {
		buf := make([]byte, 4096)
		off := 0
		for {
			n, err := rp.Read(buf)
			if n > 0 {
				if tamper != nil && !tamper(off, buf[:n]) {
					_ = rp.Close()
					_ = rc.Close()
					return
				}
				off += n
				if _, err := rc.Write(buf[:n]); err != nil {
					return
				}
			}
			if err != nil {
				_ = rc.CloseWrite()
				return
			}
		}
	})
	t.Cleanup(func() { _ = rc.Close(); _ = rp.Close(); r.wg.Wait() })
	return r
}

var testSwitchRelay = BulkRelay{Relay: "relay", Slot: SpliceSlot{Port: 9}}

// offer makes the peer's offer through r and sets the console's dialer to
// r's console end; dialed counts the console's dials. It returns what
// settle was called with.
func offerThrough(t *testing.T, con, per *Channel, r *testRelay, dialed *int) <-chan *BulkConn {
	t.Helper()
	o := NewBulkOffer()
	offers := &BulkOffers{}
	offers.Add(o, time.Minute)
	got := make(chan *BulkConn, 1)
	go func() {
		bc, err := AcceptBulk(r.peerEnd, offers)
		if err != nil {
			bc = nil
		}
		got <- bc
	}()
	var mu sync.Mutex
	con.SetBulkDialer(func(_ context.Context, oo BulkOffer, rr *BulkRelay) *BulkConn {
		mu.Lock()
		*dialed++
		mu.Unlock()
		if oo != o || *rr != testSwitchRelay {
			t.Errorf("the console dials %v through %v, offered %v through %v", oo, rr, o, testSwitchRelay)
		}
		bc, err := DialBulk(r.consoleEnd, oo)
		if err != nil {
			return nil
		}
		return bc
	})
	settled := make(chan *BulkConn, 1)
	if !per.OfferBulkSwitch(o, testSwitchRelay, got, func(bc *BulkConn) {
		if bc == nil {
			_ = r.peerEnd.Close()
		}
		settled <- bc
	}) {
		t.Fatal("no offer sent")
	}
	return settled
}

// numbered is the nth message of a side.
func numbered(n int) *pb.ExecMsg {
	return &pb.ExecMsg{Body: &pb.ExecMsg_Stdout{Stdout: binary.BigEndian.AppendUint32(make([]byte, 0, 1000), uint32(n))[:1000]}}
}

// readNumbered reads numbered messages from c until an error, checking
// that each is the next, and delivers how many came and the error.
func readNumbered(c *Channel) <-chan readResult {
	res := make(chan readResult, 1)
	go func() {
		n := 0
		for {
			var m pb.ExecMsg
			if err := c.ReadMsg(&m); err != nil {
				res <- readResult{n, err}
				return
			}
			if got := binary.BigEndian.Uint32(m.GetStdout()); len(m.GetStdout()) != 1000 || int(got) != n {
				res <- readResult{n, errors.New("a message out of order, doubled or changed")}
				return
			}
			n++
		}
	}()
	return res
}

type readResult struct {
	n   int
	err error
}

// writeNumbered writes n numbered messages from c, the writes around a
// switch (after half of them, the peer's reader is given the chance to
// act on the choice), then closes its write side.
func writeNumbered(c *Channel, from, to int) error {
	for i := from; i < to; i++ {
		if err := c.WriteMsg(numbered(i)); err != nil {
			return err
		}
	}
	return nil
}

// TestBulkSwitchMovesBothDirections: messages written before, during and
// after the switch arrive once and in order on both sides, the last ones
// from the bulk connection; the end of each direction is seen.
func TestBulkSwitchMovesBothDirections(t *testing.T) {
	con, per := switchPair(t, true)
	r := newTestRelay(t, nil)
	dialed := 0
	notes := make(chan string, 2)
	con.SetBulkNote(func(line string) { notes <- line })
	fromPeer, fromConsole := readNumbered(con), readNumbered(per)
	settled := offerThrough(t, con, per, r, &dialed)
	const n = 3000
	errs := make(chan error, 2)
	go func() { errs <- errors.Join(writeNumbered(con, 0, n), con.CloseWrite()) }()
	go func() {
		errs <- errors.Join(writeNumbered(per, 0, n/2), waitFor(per.BulkSwitched), writeNumbered(per, n/2, n), per.CloseWrite())
	}()
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for _, res := range []readResult{<-fromPeer, <-fromConsole} {
		if res.n != n || !errors.Is(res.err, io.EOF) {
			t.Fatalf("%d messages then %v; want %d then EOF", res.n, res.err, n)
		}
	}
	if bc := <-settled; bc == nil || !con.BulkSwitched() || !per.BulkSwitched() || dialed != 1 {
		t.Fatalf("settled with %v, switched %v/%v, %d dials", bc, con.BulkSwitched(), per.BulkSwitched(), dialed)
	}
	if note := <-notes; note != NoteBulkSwitched || len(notes) != 0 {
		t.Fatalf("the console's note: %q and %d more", note, len(notes))
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(cond func() bool) error {
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			return errors.New("timed out")
		}
		time.Sleep(time.Millisecond)
	}
	return nil
}

// TestBulkSwitchDeclined: a console that cannot open the offered
// connection declines it; the peer's offer is settled with nothing and
// the session goes on on the channel.
func TestBulkSwitchDeclined(t *testing.T) {
	con, per := switchPair(t, true)
	fromPeer, fromConsole := readNumbered(con), readNumbered(per)
	got := make(chan *BulkConn)
	settled := make(chan *BulkConn, 1)
	con.SetBulkDialer(func(context.Context, BulkOffer, *BulkRelay) *BulkConn { return nil }) // the splice unreachable
	notes := make(chan string, 2)
	con.SetBulkNote(func(line string) { notes <- line })
	if !per.OfferBulkSwitch(NewBulkOffer(), testSwitchRelay, got, func(bc *BulkConn) { settled <- bc }) {
		t.Fatal("no offer sent")
	}
	if bc := <-settled; bc != nil {
		t.Fatal("settled with a connection")
	}
	if err := errors.Join(writeNumbered(con, 0, 100), con.CloseWrite(), writeNumbered(per, 0, 100), per.CloseWrite()); err != nil {
		t.Fatal(err)
	}
	for _, res := range []readResult{<-fromPeer, <-fromConsole} {
		if res.n != 100 || !errors.Is(res.err, io.EOF) {
			t.Fatalf("%d messages then %v; want 100 then EOF", res.n, res.err)
		}
	}
	if con.BulkSwitched() || per.BulkSwitched() {
		t.Fatal("switched")
	}
	if note := <-notes; note != NoteBulkDeclined || len(notes) != 0 {
		t.Fatalf("the console's note: %q and %d more", note, len(notes))
	}
}

// TestBulkSwitchRelayCorrupts: a relay that alters a byte after the switch
// ends the session with a clear error; nothing altered, doubled or out of
// order is read before it.
func TestBulkSwitchRelayCorrupts(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(off int, p []byte) bool
		want   string
	}{
		{"alters", func(off int, p []byte) bool {
			if off <= 50000 && 50000 < off+len(p) {
				p[50000-off] ^= 1
			}
			return true
		}, "does not open"},
		{"cuts", func(off int, p []byte) bool { return off+len(p) < 50000 }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			con, per := switchPair(t, true)
			r := newTestRelay(t, tc.tamper)
			dialed := 0
			fromPeer, fromConsole := readNumbered(con), readNumbered(per)
			_ = offerThrough(t, con, per, r, &dialed)
			if err := waitFor(per.BulkSwitched); err != nil {
				t.Fatal(err)
			}
			werr := make(chan error, 1)
			go func() { werr <- writeNumbered(per, 0, 1000) }() // 1 MB: the relay's damage is after 50 kB
			res := <-fromPeer
			if res.err == nil || errors.Is(res.err, io.EOF) || res.n >= 1000 || !strings.Contains(res.err.Error(), tc.want) {
				t.Fatalf("%d messages then %v; want an error before the end", res.n, res.err)
			}
			t.Logf("%d messages, then: %v", res.n, res.err)
			_ = con.Reset() // the console ends the session: the peer's side ends with an error too
			if res := <-fromConsole; res.err == nil || errors.Is(res.err, io.EOF) {
				t.Fatalf("the peer read %v after the console's reset", res.err)
			}
			_ = per.Reset()
			<-werr
		})
	}
}

// TestBulkSwitchProtocolErrors: switch messages out of turn end the
// reader with a protocol error, and an offer to a console that did not
// ask for the switch is never dialled.
func TestBulkSwitchProtocolErrors(t *testing.T) {
	isProtocol := func(err error) bool { return catalog.CodeOf(err) == catalog.CodeProtocol }
	t.Run("an offer not asked for", func(t *testing.T) {
		con, per := switchPair(t, false)
		dialed := 0
		con.SetBulkDialer(func(context.Context, BulkOffer, *BulkRelay) *BulkConn { dialed++; return nil })
		_ = per.OfferBulkSwitch(NewBulkOffer(), testSwitchRelay, make(chan *BulkConn), func(*BulkConn) {})
		_ = writeNumbered(per, 0, 3)
		_ = per.CloseWrite()
		n := 0
		for {
			var m pb.ExecMsg
			if err := con.ReadMsg(&m); err != nil {
				break
			}
			if len(m.GetStdout()) == 1000 {
				n++
			}
		}
		if dialed != 0 || n != 3 || con.BulkSwitched() {
			t.Fatalf("%d dials, %d messages, switched %v", dialed, n, con.BulkSwitched())
		}
	})
	t.Run("a second offer", func(t *testing.T) {
		con, per := switchPair(t, true)
		fromPeer := readNumbered(con)
		con.SetBulkDialer(func(context.Context, BulkOffer, *BulkRelay) *BulkConn { return nil })
		per.wmu.Lock()
		for range 2 {
			_ = per.writeSwitchLocked(&pb.BulkSwitch{Step: &pb.BulkSwitch_Offer{Offer: bulkRelayOfferPB(NewBulkOffer(), testSwitchRelay)}})
		}
		per.wmu.Unlock()
		if res := <-fromPeer; !isProtocol(res.err) {
			t.Fatalf("%v", res.err)
		}
	})
	t.Run("a switch the console did not choose", func(t *testing.T) {
		con, per := switchPair(t, true)
		fromPeer := readNumbered(con)
		per.wmu.Lock()
		_ = per.writeSwitchLocked(&pb.BulkSwitch{Step: &pb.BulkSwitch_Switched{Switched: true}})
		per.wmu.Unlock()
		if res := <-fromPeer; !isProtocol(res.err) {
			t.Fatalf("%v", res.err)
		}
	})
	t.Run("a choice of no offer", func(t *testing.T) {
		con, per := switchPair(t, true)
		fromConsole := readNumbered(per)
		con.wmu.Lock()
		_ = con.writeSwitchLocked(&pb.BulkSwitch{Step: &pb.BulkSwitch_Chosen{Chosen: true}})
		con.wmu.Unlock()
		if res := <-fromConsole; !isProtocol(res.err) {
			t.Fatalf("%v", res.err)
		}
	})
}

// TestBulkSwitchKeepsTheReadDeadline: a read deadline set before the
// bulk connection arrives (the peer's linger after the exit status)
// bounds the reads on it too: a console that chose and then says nothing
// does not hold the peer's reader.
func TestBulkSwitchKeepsTheReadDeadline(t *testing.T) {
	con, per := switchPair(t, true)
	r := newTestRelay(t, nil)
	dialed := 0
	_ = per.SetReadDeadline(time.Now().Add(2 * time.Second))
	fromConsole := readNumbered(per)
	_ = readNumbered(con)
	_ = offerThrough(t, con, per, r, &dialed)
	select {
	case res := <-fromConsole:
		if !isTimeout(res.err) || !per.BulkSwitched() {
			t.Fatalf("the peer's reader ended with %v, switched %v; want the deadline on the bulk connection", res.err, per.BulkSwitched())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the peer's reader outlived its deadline")
	}
}
