package relay_test

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/relay"
	"golang.org/x/sys/unix"
)

// The splice loops (relay/spliceloop_linux.go): the relay's splices
// without a tap, as in the product.

// rawPair is two connections spliced by the relay on one of bob's slots:
// the peer's side and the console's.
func (s *spliceSite) rawPair(t testing.TB) (pc, cc *net.TCPConn) {
	t.Helper()
	slot := s.slot(t)
	pc = s.dial(t, slot.Token, channel.SpliceOfferer).(*net.TCPConn)
	cc = s.dial(t, slot.Token, channel.SpliceDialer).(*net.TCPConn)
	return pc, cc
}

// sendAll writes p to c and half-closes it, reporting the error on done.
func sendAll(c *net.TCPConn, p []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := c.Write(p)
		if err == nil {
			err = c.CloseWrite()
		}
		done <- err
	}()
	return done
}

func randomBytes(t testing.TB, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	if _, err := rand.Read(p); err != nil {
		t.Fatal(err)
	}
	return p
}

// readAllWithin reads c to its end, failing t after d.
func readAllWithin(t *testing.T, c net.Conn, d time.Duration) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(d))
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read %d bytes, then %v", len(got), err)
	}
	return got
}

// TestSpliceLoopBothWaysWithHalfClose: bytes cross both ways at once and
// each direction's end is passed on as a half-close, the other direction
// going on after it; the splice then ends and its bytes are counted.
func TestSpliceLoopBothWaysWithHalfClose(t *testing.T) {
	s := newSpliceSite(t, relay.Resources{})
	pc, cc := s.rawPair(t)
	up, down := randomBytes(t, 3<<20), randomBytes(t, 2<<20)
	upDone := sendAll(cc, up)
	got := readAllWithin(t, pc, time.Minute) // the console's half-close reached the peer
	if !bytes.Equal(got, up) {
		t.Fatalf("the peer got %d bytes, not the %d sent", len(got), len(up))
	}
	if err := <-upDone; err != nil {
		t.Fatal(err)
	}
	waitSpliceCounts(t, s.r, 0, 0, 1) // half-closed, still spliced
	downDone := sendAll(pc, down)
	if got := readAllWithin(t, cc, time.Minute); !bytes.Equal(got, down) {
		t.Fatalf("the console got %d bytes, not the %d sent", len(got), len(down))
	}
	if err := <-downDone; err != nil {
		t.Fatal(err)
	}
	waitSpliceCounts(t, s.r, 0, 0, 0)
	if got := metric(t, s.r.HTTPAddr(), "jumpmesh_relay_spliced_bytes_total"); got != float64(len(up)+len(down)) {
		t.Fatalf("spliced_bytes_total %v, want %d", got, len(up)+len(down))
	}
}

// TestSpliceLoopSlowReaderHoldsOnlyItsDirection: a side that does not read
// makes the relay park what it cannot deliver, without losing or
// reordering a byte, while the other direction of the same splice and
// another splice keep flowing.
func TestSpliceLoopSlowReaderHoldsOnlyItsDirection(t *testing.T) {
	s := newSpliceSite(t, relay.Resources{})
	pc, cc := s.rawPair(t)
	pc2, cc2 := s.rawPair(t)
	parks := relay.SpliceParks()
	// Small buffers at the ends (no autotuning): 16 MiB is more than the
	// sockets between the two hold, so the relay's writes to the peer stop.
	_ = cc.SetWriteBuffer(64 << 10)
	_ = pc.SetReadBuffer(64 << 10)
	big := randomBytes(t, 16<<20)
	var written atomic.Int64
	bigDone := make(chan error, 1)
	go func() {
		for p := big; len(p) > 0; {
			n, err := cc.Write(p[:min(len(p), 256<<10)])
			written.Add(int64(n))
			if err != nil {
				bigDone <- err
				return
			}
			p = p[n:]
		}
		bigDone <- cc.CloseWrite()
	}()
	// The peer reads nothing yet: the console's writes stop somewhere
	// short of 16 MiB, and meanwhile the peer's answer and the other
	// splice's bytes cross.
	echo(t, pc, cc, "peer to console while the console's bytes wait")
	echo(t, cc2, pc2, "another splice while the first waits")
	// The peer starts reading once the relay has parked bytes for it (its
	// buffers towards the peer full): reading sooner may leave the relay
	// nothing to park, and the test nothing to test.
	coordinatortest.Eventually(t, time.Minute, "the relay parking bytes for the slow reader", func() bool {
		return relay.SpliceParks() > parks
	})
	echo(t, pc, cc, "peer to console while the relay holds the console's bytes")
	echo(t, cc2, pc2, "another splice while the relay holds the console's bytes")
	if w := written.Load(); w == int64(len(big)) {
		t.Logf("the console wrote all %d bytes before the peer read (buffers larger than the test)", w)
	}
	got := readAllWithin(t, pc, 2*time.Minute)
	if sha256.Sum256(got) != sha256.Sum256(big) {
		t.Fatalf("the peer got %d bytes, not the %d sent in order", len(got), len(big))
	}
	if err := <-bigDone; err != nil {
		t.Fatal(err)
	}
}

// echo writes a line on from and reads it on to within 10 s.
func echo(t testing.TB, from, to net.Conn, what string) time.Duration {
	t.Helper()
	msg := []byte("k")
	start := time.Now()
	if _, err := from.Write(msg); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	_ = to.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 1)
	if _, err := io.ReadFull(to, buf); err != nil || buf[0] != msg[0] {
		t.Fatalf("%s: read %q, %v", what, buf, err)
	}
	_ = to.SetReadDeadline(time.Time{})
	return time.Since(start)
}

// TestSpliceLoopKeystrokeCrossesAtOnce: a single byte (a keystroke)
// crosses the splice as soon as it is written, not when more follows: 50
// keystrokes, each typed once the previous came back; and so it does when
// the loops let frames gather (a busy relay), within the gathering's bound.
func TestSpliceLoopKeystrokeCrossesAtOnce(t *testing.T) {
	for _, gather := range []bool{false, true} {
		name := "quiet"
		if gather {
			name = "gathering"
		}
		t.Run(name, func(t *testing.T) {
			if gather {
				// Every wake-up is followed by the gathering's sleep.
				t.Cleanup(relay.SetSpliceGather(5*time.Millisecond, 0))
			}
			s := newSpliceSite(t, relay.Resources{})
			pc, cc := s.rawPair(t)
			var rtts []time.Duration
			for range 50 {
				rtts = append(rtts, echo(t, cc, pc, "a keystroke to the peer")+echo(t, pc, cc, "its echo to the console"))
			}
			slices.Sort(rtts)
			t.Logf("keystroke round trips through the splice: median %s, slowest %s", rtts[len(rtts)/2], rtts[len(rtts)-1])
			// Generous for a loaded machine; a relay that waited for more
			// bytes would hold a lone byte until the 10 s of echo's deadline.
			if rtts[len(rtts)/2] > time.Second {
				t.Fatalf("median keystroke round trip %s", rtts[len(rtts)/2])
			}
			// Gathering, each keystroke's echo comes while the loop
			// sleeps after the keystroke: a round trip shorter than half
			// the sleep means the loop did not gather, and the test tested
			// nothing.
			if gather && rtts[len(rtts)/2] < 5*time.Millisecond/2 {
				t.Fatalf("median keystroke round trip %s while gathering for 5 ms: the loop did not gather", rtts[len(rtts)/2])
			}
		})
	}
}

// TestSpliceLoopTinyFrameFlood (attack): a member's side writing bytes one
// at a time as fast as it can gets them all across, in order, and does
// not hold up another member's splice on the same relay: its keystrokes
// still cross.
func TestSpliceLoopTinyFrameFlood(t *testing.T) {
	// The flood makes the loop gather (it reads thousands of times a
	// second), with a bound long enough to be seen.
	t.Cleanup(relay.SetSpliceGather(2*time.Millisecond, 2000))
	s := newSpliceSite(t, relay.Resources{})
	pc, cc := s.rawPair(t)
	other := member(t, s.site, "carol")
	slot, err := askSlot(t, s.site.Ctx(), other, s.r)
	if err != nil {
		t.Fatal(err)
	}
	opc := s.dial(t, slot.Token, channel.SpliceOfferer)
	occ := s.dial(t, slot.Token, channel.SpliceDialer)
	const writes = 20000
	flood := randomBytes(t, writes)
	floodDone := make(chan error, 1)
	go func() {
		for i := range flood {
			if _, err := cc.Write(flood[i : i+1]); err != nil {
				floodDone <- err
				return
			}
		}
		floodDone <- cc.CloseWrite()
	}()
	for range 10 {
		echo(t, occ, opc, "another member's keystroke during the flood")
	}
	if got := readAllWithin(t, pc, time.Minute); !bytes.Equal(got, flood) {
		t.Fatalf("the peer got %d bytes, not the %d written one by one", len(got), len(flood))
	}
	if err := <-floodDone; err != nil {
		t.Fatal(err)
	}
}

// TestSpliceLoopHeldOpenWithoutData (attack): a splice whose sides send
// nothing is cut at the circuits' duration limit, as a busy one would be.
func TestSpliceLoopHeldOpenWithoutData(t *testing.T) {
	s := newSpliceSite(t, relay.Resources{CircuitDuration: 500 * time.Millisecond})
	pc, cc := s.rawPair(t)
	waitSpliceCounts(t, s.r, 0, 0, 1)
	closedByRelay(t, pc, "the peer's side of a silent splice")
	closedByRelay(t, cc, "the console's side of a silent splice")
	waitSpliceCounts(t, s.r, 0, 0, 0)
	if got := metric(t, s.r.HTTPAddr(), `jumpmesh_relay_splice_cuts_total{limit="duration_limit"}`); got != 1 {
		t.Fatalf("duration cuts %v, want 1", got)
	}
}

// TestSpliceLoopResetSide (attack): a side that resets its connection in
// the middle of a transfer ends the splice: the other side is closed and
// the relay holds nothing.
func TestSpliceLoopResetSide(t *testing.T) {
	s := newSpliceSite(t, relay.Resources{})
	pc, cc := s.rawPair(t)
	echo(t, cc, pc, "a byte before the reset")
	go func() { _, _ = pc.Write(make([]byte, 8<<20)) }() // the console does not read
	_ = cc.SetLinger(0)
	_ = cc.Close() // a reset
	waitSpliceCounts(t, s.r, 0, 0, 0)
	_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, pc); isTimeout(err) {
		t.Fatal("the peer's side stayed open after the console's reset")
	}
}

// TestSpliceLoopMemberRemoved: a member removed from the site loses its
// running splice at the relay's next refresh.
func TestSpliceLoopMemberRemoved(t *testing.T) {
	s := newSpliceSite(t, relay.Resources{})
	pc, cc := s.rawPair(t)
	echo(t, cc, pc, "a byte before the removal")
	if err := s.site.Admin.RemoveUser(s.site.Ctx(), "bob"); err != nil {
		t.Fatal(err)
	}
	closedByRelay(t, pc, "the removed member's splice")
	closedByRelay(t, cc, "the removed member's splice, the other side")
	waitSpliceCounts(t, s.r, 0, 0, 0)
}

// TestSpliceLoopDelaysAcks: the relay acknowledges a one-way stream of
// frames (a screen, peer to console) every second frame or so, not every
// frame it reads (spliceDelayAck), and again so after a pause long enough
// for the kernel's delayed-ACK timer to fire (which ends the delayed
// mode); no byte waits for an ACK: a keystroke typed one way, each after
// the last arrived and none answered, crosses at once. Off, the relay
// acknowledges every frame: the count tells the two apart.
func TestSpliceLoopDelaysAcks(t *testing.T) {
	const frames, frameSize = 100, 6700 // a screen's frame at 200 kB/s and 30 a second
	for _, delay := range []bool{true, false} {
		name := "delayed"
		if !delay {
			name = "quick"
		}
		t.Run(name, func(t *testing.T) {
			t.Cleanup(relay.SetSpliceDelayAck(delay, relay.SpliceDelayAckGap()))
			s := newSpliceSite(t, relay.Resources{})
			pc, cc := s.rawPair(t)
			echo(t, pc, cc, "a first byte")
			frame := randomBytes(t, frameSize)
			got := make([]byte, frameSize)
			send := func(i int) {
				if _, err := pc.Write(frame); err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				_ = cc.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := io.ReadFull(cc, got); err != nil || !bytes.Equal(got, frame) {
					t.Fatalf("frame %d: %v", i, err)
				}
			}
			// The relay's ACKs are all the peer's side receives: the
			// console sends nothing.
			check := func(what string) {
				acks0 := segmentsIn(t, pc)
				for i := range frames {
					send(i)
				}
				acks := segmentsIn(t, pc) - acks0
				t.Logf("%s: %d frames read one at a time by the relay, %d ACKs from it", what, frames, acks)
				if delay && acks > frames*3/4 {
					t.Fatalf("%s: the relay acknowledged %d of %d frames with quick ACKs off", what, acks, frames)
				}
				if !delay && acks < frames*9/10 {
					t.Fatalf("%s: the relay acknowledged %d of %d frames with quick ACKs on: the count measures nothing", what, acks, frames)
				}
			}
			check("first")
			// A lone frame is acknowledged by the kernel's timer, which
			// ends the delayed mode; the relay sets it again at its next
			// read. Of two frames sent each once the last was
			// acknowledged, one is lone (the first may make a pair with
			// the hundredth).
			for i := range 2 {
				acks := segmentsIn(t, pc)
				send(frames + i)
				coordinatortest.Eventually(t, 10*time.Second, "the relay's ACK of a frame", func() bool {
					return segmentsIn(t, pc) > acks
				})
			}
			check("after the timer")
			// Keystrokes one way, console to peer: the peer's side does
			// not answer, so only the relay's (delayed) ACKs go back.
			var lat []time.Duration
			for range 50 {
				lat = append(lat, echo(t, cc, pc, "a keystroke to the peer"))
			}
			slices.Sort(lat)
			t.Logf("keystrokes one way: median %s, slowest %s", lat[len(lat)/2], lat[len(lat)-1])
			// A keystroke that waited for an ACK would take the delayed-ACK
			// timer's 40 ms; one that waited for more bytes, echo's 10 s.
			if lat[len(lat)/2] > 20*time.Millisecond {
				t.Fatalf("median keystroke %s one way with the relay's ACKs delayed", lat[len(lat)/2])
			}
		})
	}
}

// segmentsIn is the TCP segments c's socket has received.
func segmentsIn(t testing.TB, c *net.TCPConn) uint32 {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var info *unix.TCPInfo
	var ierr error
	if err := rc.Control(func(fd uintptr) { info, ierr = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) }); err != nil {
		t.Fatal(err)
	}
	if ierr != nil {
		t.Fatal(ierr)
	}
	return info.Segs_in
}
