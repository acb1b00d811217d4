package coordinator

import (
	"time"

	"github.com/libp2p/go-libp2p/core/network"
)

// waitStream is an online peer's stream as its session reads it. Between
// messages, the session's reader waits in await, a few frames above its
// goroutine's start, rather than inside a message read (frame reader,
// varint, bufio, then the muxer: twice as deep). Go shrinks a parked
// goroutine's stack at a GC only while it uses less than a quarter of it
// (counting ~900 bytes of guard), so with the shallow wait each idle
// peer's reader keeps a 4 KiB stack rather than 8 KiB: a fifth of an
// online peer's stacks (docs/performance.md, "Coordinator under storms").
type waitStream struct {
	network.Stream
	// next is the byte await read, held for the next Read.
	next [1]byte
	held bool
}

// Read returns the held byte first, then reads the stream.
func (w *waitStream) Read(p []byte) (int, error) {
	if w.held && len(p) > 0 {
		p[0], w.held = w.next[0], false
		return 1, nil
	}
	return w.Stream.Read(p)
}

// await waits at most timeout for the stream's next byte and holds it for
// Read. Only the stream's reader calls it, and only while its frame reader
// holds nothing (frame.Stream.Buffered).
func (w *waitStream) await(timeout time.Duration) error {
	if w.held {
		return nil
	}
	_ = w.Stream.SetReadDeadline(time.Now().Add(timeout))
	n, err := w.Stream.Read(w.next[:])
	_ = w.Stream.SetReadDeadline(time.Time{})
	if w.held = n == 1; w.held {
		return nil
	}
	return err
}
