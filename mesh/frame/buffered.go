package frame

// Buffered is how many bytes the stream's reader holds already read from
// the stream and not yet decoded: while it holds some, the next Read
// returns without waiting for the stream.
func (m *Stream) Buffered() int { return m.r.r.Buffered() }
