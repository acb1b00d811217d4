package relay_test

import (
	"net"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/relay"
)

// TestSpliceLoopThroughScheduler: the splice loops with every system call
// made through Go's scheduler (spliceRaw off, as before session 27) pass
// the loops' tests too: both ways with half-close, a slow reader, a
// keystroke and a tiny-frame flood.
func TestSpliceLoopThroughScheduler(t *testing.T) {
	t.Cleanup(relay.SetSpliceRaw(false))
	t.Run("both ways with half-close", TestSpliceLoopBothWaysWithHalfClose)
	t.Run("slow reader", TestSpliceLoopSlowReaderHoldsOnlyItsDirection)
	t.Run("keystroke", TestSpliceLoopKeystrokeCrossesAtOnce)
	t.Run("tiny-frame flood", TestSpliceLoopTinyFrameFlood)
}

// TestSpliceLoopOnOneProcessor: on one processor the loops make every call
// through Go's scheduler (a raw call would hold the only processor), and
// the loops' tests pass there too.
func TestSpliceLoopOnOneProcessor(t *testing.T) {
	prev := runtime.GOMAXPROCS(1)
	t.Cleanup(func() { runtime.GOMAXPROCS(prev) })
	t.Run("both ways with half-close", TestSpliceLoopBothWaysWithHalfClose)
	t.Run("keystroke", TestSpliceLoopKeystrokeCrossesAtOnce)
	t.Run("tiny-frame flood", TestSpliceLoopTinyFrameFlood)
}

// TestSpliceLoopNoDescriptorLeak: 1,000 splices opened, used and closed
// (half of them by the peer's side, half by the console's) leave the
// relay's process with the descriptors it had after its first splice (its
// loops' epoll sets, eventfds and pipes, started with the first).
func TestSpliceLoopNoDescriptorLeak(t *testing.T) {
	s := newSpliceSite(t, relay.Resources{})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(relay.SplicePort(s.r)))
	splice := func(i int) {
		slot := s.slot(t)
		var conns [2]net.Conn
		for j, side := range []byte{channel.SpliceOfferer, channel.SpliceDialer} {
			c, err := channel.DialSplice(s.site.Ctx(), addr, slot.Token, side, 10*time.Second)
			if err != nil {
				t.Fatalf("splice %d: %v", i, err)
			}
			conns[j] = c
		}
		echo(t, conns[1], conns[0], "a keystroke through splice "+strconv.Itoa(i))
		_ = conns[i%2].Close()
		_ = conns[1-i%2].Close()
	}
	splice(0)
	waitSpliceCounts(t, s.r, 0, 0, 0)
	before := openFDs(t)
	const splices = 1000
	for i := 1; i <= splices; i++ {
		splice(i)
	}
	waitSpliceCounts(t, s.r, 0, 0, 0)
	// Some slack for what the test's own hosts and the site open and close
	// meanwhile (connections, timers), and for the pipes a loop keeps in
	// its pool (16 pipes, 32 descriptors): a leak of one descriptor a
	// splice would be a thousand.
	const slack = 64
	var after int
	coordinatortest.Eventually(t, 10*time.Second, "the descriptors after 1,000 splices", func() bool {
		after = openFDs(t)
		return after <= before+slack
	})
	t.Logf("open descriptors: %d after the first splice, %d after %d more", before, after, splices)
}

// openFDs is how many descriptors this process has open.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
