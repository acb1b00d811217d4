package mesh

import (
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio/pbio"
	"google.golang.org/protobuf/proto"
)

// PeerProtocol is the protocol ID of a peer's persistent stream to its
// coordinator; see the peer package's doc.go for the message flow.
const PeerProtocol protocol.ID = "/jumpmesh/peer/1.0.0"

// MaxPeerMessage bounds one message on the peer protocol.
const MaxPeerMessage = 256 << 10

// MsgStream reads and writes length-delimited protobuf messages on a
// long-lived stream. Writes are serialised, so several goroutines may send;
// reads belong to one goroutine.
type MsgStream struct {
	s  network.Stream
	r  pbio.ReadCloser
	mu sync.Mutex
	w  pbio.WriteCloser
}

// NewMsgStream wraps s.
func NewMsgStream(s network.Stream, maxMessage int) *MsgStream {
	return &MsgStream{s: s, r: pbio.NewDelimitedReader(s, maxMessage), w: pbio.NewDelimitedWriter(s)}
}

// Read reads the next message, waiting at most timeout (0: no limit).
func (m *MsgStream) Read(msg proto.Message, timeout time.Duration) error {
	if timeout > 0 {
		_ = m.s.SetReadDeadline(time.Now().Add(timeout))
		defer m.s.SetReadDeadline(time.Time{})
	}
	return m.r.ReadMsg(msg)
}

// Write sends one message, waiting at most timeout (0: no limit).
func (m *MsgStream) Write(msg proto.Message, timeout time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if timeout > 0 {
		_ = m.s.SetWriteDeadline(time.Now().Add(timeout))
		defer m.s.SetWriteDeadline(time.Time{})
	}
	return m.w.WriteMsg(msg)
}

// Close closes the stream for both directions.
func (m *MsgStream) Close() error { return m.s.Close() }

// Reset aborts the stream.
func (m *MsgStream) Reset() error { return m.s.Reset() }

// Stream is the underlying libp2p stream.
func (m *MsgStream) Stream() network.Stream { return m.s }
