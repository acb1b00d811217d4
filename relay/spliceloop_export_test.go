package relay

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
// now on.
func SetSpliceDelayAck(on bool) (restore func()) {
	prev := spliceDelayAck
	spliceDelayAck = on
	return func() { spliceDelayAck = prev }
}
