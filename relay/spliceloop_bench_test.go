package relay_test

import (
	"bytes"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/relay"
)

// BenchmarkSpliceFrameDelivery measures what the splice loops' delayed
// ACKs (spliceDelayAck) do to a screen's latency: through one splice of a
// relay in this process, the peer's side sends a 6.7 kB frame 30 times a
// second (a screen at 200 kB/s) and the console's side types a keystroke
// after each; each frame's delivery time (its write to the last byte read
// at the console's side) and each keystroke's (one way, unanswered, so
// only the relay's ACKs go back) are taken, with the relay's ACKs delayed
// and with quick ACKs, the two alternating: one op is a round of
// deliverFrames frames each way, a new relay per round. It reports the
// median and the 99th percentile of each, in µs, and delayed ÷ quick of
// the frames' medians (1: no change).
func BenchmarkSpliceFrameDelivery(b *testing.B) {
	const frameSize, deliverFrames = 6700, 60
	var frames, keys [2][]time.Duration // [0] delayed, [1] quick
	for b.Loop() {
		for m, delay := range []bool{true, false} {
			restore := relay.SetSpliceDelayAck(delay, relay.SpliceDelayAckGap())
			s := newSpliceSite(b, relay.Resources{})
			pc, cc := s.rawPair(b)
			f, k := deliver(b, pc, cc, frameSize, deliverFrames)
			frames[m] = append(frames[m], f...)
			keys[m] = append(keys[m], k...)
			_ = pc.Close()
			_ = cc.Close()
			restore()
		}
	}
	b.ReportMetric(0, "ns/op")
	for m, name := range []string{"delayed", "quick"} {
		b.ReportMetric(quantileUS(frames[m], 0.5), name+"-frame-p50-us")
		b.ReportMetric(quantileUS(frames[m], 0.99), name+"-frame-p99-us")
		b.ReportMetric(quantileUS(keys[m], 0.5), name+"-key-p50-us")
		b.ReportMetric(quantileUS(keys[m], 0.99), name+"-key-p99-us")
	}
	b.ReportMetric(quantileUS(frames[0], 0.5)/quantileUS(frames[1], 0.5), "delayed/quick-frame-p50")
	b.Logf("load average %s", loadAverage())
}

// deliver sends n frames of size bytes from pc to cc at 30 a second, a
// keystroke from cc to pc after each, and returns their delivery times.
func deliver(b *testing.B, pc, cc net.Conn, size, n int) (frames, keys []time.Duration) {
	frame := randomBytes(b, size)
	got := make([]byte, size)
	tick := time.NewTicker(time.Second / 30)
	defer tick.Stop()
	for i := range n {
		<-tick.C
		start := time.Now()
		if _, err := pc.Write(frame); err != nil {
			b.Fatalf("frame %d: %v", i, err)
		}
		_ = cc.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(cc, got); err != nil || !bytes.Equal(got, frame) {
			b.Fatalf("frame %d: %v", i, err)
		}
		frames = append(frames, time.Since(start))
		keys = append(keys, echo(b, cc, pc, "a keystroke"))
	}
	return frames, keys
}

// quantileUS is the q quantile of ds in µs.
func quantileUS(ds []time.Duration, q float64) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[min(int(q*float64(len(s))), len(s)-1)]) / 1e3
}

// BenchmarkSpliceLoopScreens measures what the splice loops' delayed ACKs
// cost or save the whole machine, not only the relay: screenSessions
// splices through a relay in this process, each carrying a 6.7 kB frame
// 30 times a second one way, their ends plain TCP connections in this
// process too, so that this process's CPU (user and system, with the
// loopback deliveries and ACKs on either side) is all the sessions cost.
// Each op is a window of screenWindow in each mode — the relay's ACKs
// delayed as it runs (quick ACKs turned off again after a gap), delayed
// with quick ACKs turned off before every read, and quick ACKs — each on
// sessions of its own (a socket stays in delayed mode once in it); it
// reports per mode the process's CPU µs per frame, the ACKs the relay
// sent per frame (the peers' sockets' segments in) and the kernel's
// delayed-ACK timer ACKs per frame (TcpExt DelayedACKs, machine-wide: an
// ACK sent from a timer may be charged to another process), and each
// delayed mode's CPU ÷ quick's (below 1: the machine pays less).
func BenchmarkSpliceLoopScreens(b *testing.B) {
	const screenSessions, screenWindow, frameSize = 200, 5 * time.Second, 6700
	s := newSpliceSite(b, relay.Resources{MaxCircuits: 2 * screenSessions, MaxCircuitsPerPeer: 2 * screenSessions})
	modes := []struct {
		name  string
		delay bool
		gap   time.Duration
	}{{"delayed", true, relay.SpliceDelayAckGap()}, {"each", true, 0}, {"quick", false, 0}}
	type sums struct{ cpu, frames, acks, timerAcks float64 }
	got := make([]sums, len(modes))
	for b.Loop() {
		for m, mode := range modes {
			restore := relay.SetSpliceDelayAck(mode.delay, mode.gap)
			pcs, ccs := make([]*net.TCPConn, screenSessions), make([]*net.TCPConn, screenSessions)
			for i := range pcs {
				pcs[i], ccs[i] = s.rawPair(b)
				if i%8 == 7 {
					// A member holds at most 16 slots not yet paired.
					waitSpliceCounts(b, s.r, 0, 0, i+1)
				}
			}
			w := screens(b, pcs, ccs, frameSize, screenWindow)
			got[m].cpu += w.cpu.Seconds() * 1e6
			got[m].frames += float64(w.frames)
			got[m].acks += float64(w.acks)
			got[m].timerAcks += float64(w.timerAcks)
			for i := range pcs {
				_ = pcs[i].Close()
				_ = ccs[i].Close()
			}
			waitSpliceCounts(b, s.r, 0, 0, 0)
			restore()
		}
	}
	b.ReportMetric(0, "ns/op")
	quick := got[len(got)-1].cpu / got[len(got)-1].frames
	for m, mode := range modes {
		cpu := got[m].cpu / got[m].frames
		b.ReportMetric(cpu, mode.name+"-cpu-us/frame")
		b.ReportMetric(got[m].acks/got[m].frames, mode.name+"-relay-acks/frame")
		b.ReportMetric(got[m].timerAcks/got[m].frames, mode.name+"-timer-acks/frame")
		if mode.delay {
			b.ReportMetric(cpu/quick, mode.name+"/quick-cpu")
		}
	}
	b.Logf("load average %s", loadAverage())
}

// screenWindowResult is what one window of screens cost.
type screenWindowResult struct {
	cpu                     time.Duration // this process's user and system CPU
	frames, acks, timerAcks int64
}

// screens runs a screen on every pair (pcs[i] to ccs[i], a frame of size
// bytes 30 times a second, the sessions' ticks spread over a frame
// interval) for window, after one frame each has crossed, and returns
// what the window cost.
func screens(b *testing.B, pcs, ccs []*net.TCPConn, size int, window time.Duration) screenWindowResult {
	frame := make([]byte, size)
	var delivered atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for i := range pcs {
		wg.Go(func() {
			buf := make([]byte, 32<<10)
			for {
				n, err := ccs[i].Read(buf)
				delivered.Add(int64(n))
				if err != nil {
					return
				}
			}
		})
		phase := time.Duration(i) * time.Second / 30 / time.Duration(len(pcs))
		wg.Go(func() {
			t := time.NewTimer(phase)
			select {
			case <-stop:
				t.Stop()
				return
			case <-t.C:
			}
			tick := time.NewTicker(time.Second / 30)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := pcs[i].Write(frame); err != nil {
						return
					}
				}
			}
		})
	}
	coordinatortest.Eventually(b, time.Minute, "a frame on every session", func() bool {
		return delivered.Load() >= int64(len(pcs)*size)
	})
	acks0, timer0, cpu0, bytes0 := segmentsInAll(b, pcs), delayedAcks(b), selfCPU(b), delivered.Load()
	t := time.NewTimer(window)
	<-t.C
	acks1, timer1, cpu1, bytes1 := segmentsInAll(b, pcs), delayedAcks(b), selfCPU(b), delivered.Load()
	close(stop)
	for _, c := range ccs {
		_ = c.SetReadDeadline(time.Now()) // the readers end
	}
	wg.Wait()
	return screenWindowResult{cpu: cpu1 - cpu0, frames: (bytes1 - bytes0) / int64(size), acks: int64(acks1 - acks0), timerAcks: timer1 - timer0}
}

func segmentsInAll(b *testing.B, cs []*net.TCPConn) uint64 {
	var n uint64
	for _, c := range cs {
		n += uint64(segmentsIn(b, c))
	}
	return n
}

// delayedAcks is the kernel's count of ACKs sent by its delayed-ACK timer
// (TcpExt DelayedACKs in /proc/net/netstat: this network namespace).
func delayedAcks(b *testing.B) int64 {
	raw, err := os.ReadFile("/proc/net/netstat")
	if err != nil {
		b.Fatal(err)
	}
	var names []string
	for line := range strings.SplitSeq(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "TcpExt:" {
			continue
		}
		if names == nil {
			names = f
			continue
		}
		for i, name := range names {
			if name == "DelayedACKs" && i < len(f) {
				v, err := strconv.ParseInt(f[i], 10, 64)
				if err != nil {
					b.Fatal(err)
				}
				return v
			}
		}
	}
	b.Fatal("no TcpExt DelayedACKs in /proc/net/netstat")
	return 0
}
