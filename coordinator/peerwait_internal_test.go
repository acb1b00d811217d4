package coordinator

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-msgio/pbio"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/peerproto"
)

// pipeStream is one end of a net.Pipe as a libp2p stream: reads, writes
// and read deadlines; no resource scope.
type pipeStream struct {
	network.Stream
	c net.Conn
}

func (p pipeStream) Read(b []byte) (int, error)         { return p.c.Read(b) }
func (p pipeStream) Write(b []byte) (int, error)        { return p.c.Write(b) }
func (p pipeStream) SetReadDeadline(t time.Time) error  { return p.c.SetReadDeadline(t) }
func (p pipeStream) SetWriteDeadline(t time.Time) error { return p.c.SetWriteDeadline(t) }
func (p pipeStream) Scope() network.StreamScope         { return nil }
func (p pipeStream) Reset() error                       { return p.c.Close() }

// readLikePeer reads one message as readPeer does: a shallow wait while
// the frame reader holds nothing, then the message.
func readLikePeer(ws *waitStream, ms *frame.Stream, timeout time.Duration) (*pb.PeerUp, error) {
	if ms.Buffered() == 0 {
		if err := ws.await(timeout); err != nil {
			return nil, err
		}
	}
	var up pb.PeerUp
	return &up, ms.Read(&up, timeout)
}

// TestShallowWaitKeepsEveryByte: a peer's messages reach the session
// intact whether they come a byte at a time (the byte await took is the
// message's first) or several in one write (the second is already in the
// frame reader's buffer, so there is no wait).
func TestShallowWaitKeepsEveryByte(t *testing.T) {
	var wire bytes.Buffer
	w := pbio.NewDelimitedWriter(&wire)
	var sent []*pb.PeerUp
	for i := range 3 {
		up := &pb.PeerUp{Body: &pb.PeerUp_Stats{Stats: &pb.PeerStats{UptimeSeconds: uint64(1000 + i)}}}
		sent = append(sent, up)
		if err := w.WriteMsg(up); err != nil {
			t.Fatal(err)
		}
	}
	for _, split := range []string{"byte by byte", "all at once"} {
		t.Run(split, func(t *testing.T) {
			ours, theirs := net.Pipe()
			defer ours.Close()
			defer theirs.Close()
			go func() {
				raw := wire.Bytes()
				if split == "all at once" {
					theirs.Write(raw)
					return
				}
				for i := range raw {
					if _, err := theirs.Write(raw[i : i+1]); err != nil {
						return
					}
				}
			}()
			ws := &waitStream{Stream: pipeStream{c: ours}}
			ms := frame.NewStream(ws, peerproto.MaxMessage)
			for i, want := range sent {
				got, err := readLikePeer(ws, ms, 10*time.Second)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if !proto.Equal(got, want) {
					t.Fatalf("message %d: got %v, want %v", i, got, want)
				}
			}
		})
	}
}

// TestShallowWaitIsBounded (attack: an enrolled peer that goes silent, or
// sends a message's first byte and nothing more, to hold the coordinator's
// reader): the wait ends at its timeout, and so does the message read
// after a lone byte; the session then ends as readPeer's did before.
func TestShallowWaitIsBounded(t *testing.T) {
	ours, theirs := net.Pipe()
	defer ours.Close()
	defer theirs.Close()
	ws := &waitStream{Stream: pipeStream{c: ours}}
	ms := frame.NewStream(ws, peerproto.MaxMessage)
	const timeout = 100 * time.Millisecond
	start := time.Now()
	if _, err := readLikePeer(ws, ms, timeout); err == nil {
		t.Fatal("a silent peer's wait returned no error")
	}
	if took := time.Since(start); took > 20*timeout {
		t.Fatalf("a silent peer's wait took %s (timeout %s)", took, timeout)
	}
	go theirs.Write([]byte{0x05}) // a 5-byte message's length, then nothing
	start = time.Now()
	if _, err := readLikePeer(ws, ms, timeout); err == nil {
		t.Fatal("a message that never came was read")
	}
	if took := time.Since(start); took > 20*timeout {
		t.Fatalf("a lone byte held the reader %s (timeout %s)", took, timeout)
	}
}
