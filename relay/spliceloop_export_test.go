package relay

import "time"

// SetSpliceRaw makes the splice loops of every relay make their calls that
// never block as raw system calls (on) or through Go's scheduler (off),
// from now on.
func SetSpliceRaw(on bool) (restore func()) {
	prev := spliceRaw
	spliceRaw = on
	return func() { spliceRaw = prev }
}

// SetSpliceDelayAck makes the splice loops of every relay turn quick ACKs
// off on the sockets they read (on) or leave them as they are (off), from
// now on; gap is spliceDelayAckGap (0: before every read).
func SetSpliceDelayAck(on bool, gap time.Duration) (restore func()) {
	prev, prevGap := spliceDelayAck, spliceDelayAckGap
	spliceDelayAck, spliceDelayAckGap = on, gap
	return func() { spliceDelayAck, spliceDelayAckGap = prev, prevGap }
}

// SpliceDelayAckGap is the gap after which the loops turn quick ACKs off
// again (spliceDelayAckGap).
func SpliceDelayAckGap() time.Duration { return spliceDelayAckGap }
