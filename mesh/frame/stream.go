package frame

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"google.golang.org/protobuf/proto"
)

// MsgStream reads and writes length-delimited protobuf messages on a
// long-lived stream. Writes are serialised, so several goroutines may send;
// reads belong to one goroutine.
type Stream struct {
	s  network.Stream
	r  *Reader
	mu sync.Mutex
}

// NewMsgStream wraps s. Messages read are charged to the stream's
// resource scope while they are decoded (see MsgReader).
func NewStream(s network.Stream, maxMessage int) *Stream {
	return &Stream{s: s, r: NewReader(s, s.Scope(), maxMessage)}
}

// SetMaxMessage changes the largest message the next reads accept: a
// coordinator reads a stranger's hello with a small limit and lifts it
// once the stranger is a member. Call it from the reading goroutine.
func (m *Stream) SetMaxMessage(n int) { m.r.SetMax(n) }

// Read reads the next message, waiting at most timeout (0: no limit).
func (m *Stream) Read(msg proto.Message, timeout time.Duration) error {
	if timeout > 0 {
		_ = m.s.SetReadDeadline(time.Now().Add(timeout))
		defer m.s.SetReadDeadline(time.Time{})
	}
	return m.r.ReadMsg(msg)
}

// Write sends one message, waiting at most timeout (0: no limit), in one
// write of the stream (Append).
func (m *Stream) Write(msg proto.Message, timeout time.Duration) error {
	buf, err := Append(nil, msg)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if timeout > 0 {
		_ = m.s.SetWriteDeadline(time.Now().Add(timeout))
		defer m.s.SetWriteDeadline(time.Time{})
	}
	_, err = m.s.Write(buf)
	return err
}

// Append appends msg to b framed: its length as an unsigned varint, then
// the message, the bytes go-libp2p's pbio writer sends. That writer (and
// protodelim's) writes the length and the message in two writes, and on a
// yamux stream each write is a frame of its own, sent as a TLS record of
// its own in a system call of its own, read so at the other end: two of
// each for every message. Written at once, they are one.
func Append(b []byte, msg proto.Message) ([]byte, error) {
	size := proto.Size(msg)
	b = slices.Grow(b, binary.MaxVarintLen64+size)
	b = binary.AppendUvarint(b, uint64(size))
	start := len(b)
	// The size was just computed (and cached in msg): the marshal reuses it.
	b, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(b, msg)
	if err == nil && len(b)-start != size {
		err = fmt.Errorf("a %s changed while it was framed", msg.ProtoReflect().Descriptor().FullName())
	}
	return b, err
}

// Writer writes framed messages to an io.Writer, each in one write
// (Append): what go-libp2p's pbio delimited writer sends, without its
// second write. Like pbio's, it is not for several goroutines at once.
type Writer struct {
	w   io.Writer
	buf []byte
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// WriteMsg sends msg framed, in one write.
func (w *Writer) WriteMsg(msg proto.Message) error {
	b, err := Append(w.buf[:0], msg)
	if err != nil {
		return err
	}
	if cap(b) <= 4096 {
		w.buf = b // the next message reuses a small buffer, not a large one
	}
	_, err = w.w.Write(b)
	return err
}

// Close closes the stream for both directions.
func (m *Stream) Close() error { return m.s.Close() }

// Reset aborts the stream.
func (m *Stream) Reset() error { return m.s.Reset() }

// Stream is the underlying libp2p stream.
func (m *Stream) Stream() network.Stream { return m.s }

// ErrMessageTooLarge is returned (wrapping io.ErrShortBuffer, as go-msgio
// did) when a message's declared length passes the reader's limit.
var ErrTooLarge = fmt.Errorf("message too large: %w", io.ErrShortBuffer)

// MemoryScope is where a reader charges the message it is decoding: a
// libp2p stream's resource scope, so that the resource manager's memory
// limits (per peer, per protocol, for the whole host) bound what callers
// make us hold.
type MemoryScope interface {
	ReserveMemory(size int, prio uint8) error
	ReleaseMemory(size int)
}

// MsgReader reads unsigned-varint-length-delimited protobuf messages (the
// go-libp2p pbio framing). Unlike go-msgio, it checks the declared length
// against its limit before allocating anything, charges it to a resource
// scope, and grows its buffer only as the bytes arrive: a caller that
// declares a megabyte and sends nothing costs nothing, one that sends it
// is refused by the resource manager once its peer's or the host's memory
// budget is spent.
type Reader struct {
	r     *bufio.Reader
	scope MemoryScope
	max   int
	small []byte // reused for messages up to reuseMax bytes
	// declared: a large message's buffer is its declared length at once
	// (AllocateDeclared).
	declared bool
}

// reuseMax bounds the buffer a reader keeps between messages: a peer's
// statistics (a few hundred bytes) reuse it; a rare large message is
// garbage once decoded instead of held for the stream's life.
const reuseMax = 4 << 10

// readBufSize is the reader's own buffer: a stream lives as long as its
// peer is online, so per-stream bytes count (thousands of peers); larger
// bodies bypass it and are read straight into their buffer.
const readBufSize = 512

// growStep is the first allocation for a large message; the buffer then
// doubles as bytes arrive, so at most twice what was received is held.
const growStep = 32 << 10

// NewMsgReader reads from r, at most maxMessage bytes per message. scope
// may be nil (nothing charged).
func NewReader(r io.Reader, scope MemoryScope, maxMessage int) *Reader {
	return &Reader{r: bufio.NewReaderSize(r, readBufSize), scope: scope, max: maxMessage}
}

// SetMax changes the limit for the following messages.
func (mr *Reader) SetMax(n int) { mr.max = n }

// AllocateDeclared makes the reader allocate a large message's declared
// length (within its limit) at once instead of growing its buffer as the
// bytes arrive: for a reader of an answer it asked a party it
// authenticated for (a console reading its coordinator's reply), whose
// lie costs at most the limit once. A list of 1,000 peers (190 KB) is then
// read into one buffer of its length, where the doublings allocated 32,
// 80 and 200 KB (312 KB) and copied 112 KB.
func (mr *Reader) AllocateDeclared() *Reader {
	mr.declared = true
	return mr
}

// ReadMsg reads and decodes one message into m.
func (mr *Reader) ReadMsg(m proto.Message) error {
	return mr.read(func(buf []byte) error { return proto.Unmarshal(buf, m) })
}

// ReadRaw reads one message's bytes, undecoded, into a buffer of its own
// that the caller may keep (the scope is charged only while it is read).
func (mr *Reader) ReadRaw() ([]byte, error) {
	var raw []byte
	err := mr.read(func(buf []byte) error {
		if len(buf) <= reuseMax {
			buf = append([]byte(nil), buf...) // mr.small is reused
		}
		raw = buf
		return nil
	})
	return raw, err
}

// read reads one message and hands its bytes to use while they are
// charged to the scope.
func (mr *Reader) read(use func([]byte) error) error {
	n64, err := binary.ReadUvarint(mr.r)
	if err != nil {
		return err
	}
	if n64 > uint64(mr.max) {
		return fmt.Errorf("%w (%d bytes declared, %d allowed)", ErrTooLarge, n64, mr.max)
	}
	n := int(n64)
	if mr.scope != nil && n > reuseMax {
		if err := mr.scope.ReserveMemory(n, network.ReservationPriorityMedium); err != nil {
			return fmt.Errorf("reserving %d bytes for a message: %w", n, err)
		}
		defer mr.scope.ReleaseMemory(n)
	}
	buf, err := mr.readBody(n)
	if err != nil {
		return err
	}
	return use(buf)
}

func (mr *Reader) readBody(n int) ([]byte, error) {
	if n <= reuseMax {
		if cap(mr.small) < n {
			// Only what this stream's messages need (a peer's statistics:
			// a few hundred bytes), not reuseMax for every stream.
			mr.small = make([]byte, min(max(n, 2*cap(mr.small), 256), reuseMax))
		}
		buf := mr.small[:n]
		_, err := io.ReadFull(mr.r, buf)
		return buf, unexpected(err)
	}
	if mr.declared {
		buf := make([]byte, n)
		_, err := io.ReadFull(mr.r, buf)
		if err != nil {
			return nil, unexpected(err)
		}
		return buf, nil
	}
	buf := make([]byte, 0, growStep)
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, min(cap(buf), n-len(buf)))...)[:len(buf)]
		}
		k, err := io.ReadFull(mr.r, buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+k]
		if err != nil {
			return nil, unexpected(err)
		}
	}
	return buf, nil
}

// unexpected turns an EOF inside a message into io.ErrUnexpectedEOF.
func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
