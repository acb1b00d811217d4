package relay_test

import (
	"bytes"
	"io"
	"net"
	"slices"
	"testing"
	"time"

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
			restore := relay.SetSpliceDelayAck(delay)
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
