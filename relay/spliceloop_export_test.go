package relay

// SetSpliceRaw makes the splice loops of every relay make their calls that
// never block as raw system calls (on) or through Go's scheduler (off),
// from now on.
func SetSpliceRaw(on bool) (restore func()) {
	prev := spliceRaw
	spliceRaw = on
	return func() { spliceRaw = prev }
}
