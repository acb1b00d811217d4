package relay

import (
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	ma "github.com/multiformats/go-multiaddr"
)

// SetServiceHost wraps the host the circuit v2 service of relays New starts
// from now on is given (nil: the host itself), so a test can see what the
// relay's copy loop reads and writes. It returns a function that puts back
// the previous one.
func SetServiceHost(wrap func(host.Host) host.Host) (restore func()) {
	prev := serviceHost
	serviceHost = wrap
	return func() { serviceHost = prev }
}

// SpliceCounts are r's splice slots, connections waiting in them and
// splices running.
func SpliceCounts(r *Relay) (slots, waiting, active int) { return r.splice.counts() }

// SplicePort is r's splice listener's port.
func SplicePort(r *Relay) int { return r.splice.port }

// ListenAddrs are the addresses r's host listens on (not what it
// announces).
func ListenAddrs(r *Relay) []ma.Multiaddr { return r.host.Network().ListenAddresses() }

// Splice limits and bounds, for the attack tests.
const (
	SpliceSlotsPerMember = spliceSlotsPerMember
	SpliceCutData        = spliceCutData
)

// SetSpliceTimes sets the slots' lifetime and the listener's wait for a
// token from now on.
func SetSpliceTimes(ttl, hello time.Duration) (restore func()) {
	pt, ph := spliceSlotTTL, spliceHelloTimeout
	spliceSlotTTL, spliceHelloTimeout = ttl, hello
	return func() { spliceSlotTTL, spliceHelloTimeout = pt, ph }
}

// SetSpliceTap makes every relay's splicer hand tap each byte it copies.
func SetSpliceTap(tap func([]byte)) (restore func()) {
	prev := spliceTap
	spliceTap = tap
	return func() { spliceTap = prev }
}

// SetSpliceMisPair makes every relay pair a second side with the first
// side of another slot (a relay that lies).
func SetSpliceMisPair(on bool) (restore func()) {
	prev := spliceMisPair
	spliceMisPair = on
	return func() { spliceMisPair = prev }
}

// SpliceParks is how many times the splice loops parked a direction's
// bytes in a pipe of its own (a slow reader), in every relay so far.
func SpliceParks() int64 { return spliceParks.Load() }

// SetSpliceGoCopy makes every relay's splices copy with io.Copy (two
// goroutines each) instead of its splice loops.
func SetSpliceGoCopy(on bool) (restore func()) {
	prev := spliceGoCopy
	spliceGoCopy = on
	return func() { spliceGoCopy = prev }
}

// SetSpliceGather sets how long the splice loops let frames gather and
// above which rate of reads a second, from now on.
func SetSpliceGather(d time.Duration, rate float64) (restore func()) {
	pd, pr := spliceGather, spliceGatherRate
	spliceGather, spliceGatherRate = d, rate
	return func() { spliceGather, spliceGatherRate = pd, pr }
}

// SetSpliceLoops sets how many splice loops relays made from now on run.
func SetSpliceLoops(n int) (restore func()) {
	prev := spliceLoopCount
	spliceLoopCount = func() int { return n }
	return func() { spliceLoopCount = prev }
}
