package frame_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio/pbio"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestAppendIsPbioFraming: Append's bytes are exactly what go-libp2p's pbio
// writer sends (the wire format every older party reads), for an empty
// message, a one-byte length and lengths of two and three bytes.
func TestAppendIsPbioFraming(t *testing.T) {
	for _, n := range []int{0, 1, 100, 127, 128, 5000, 70000} {
		msg := &pb.PeerUp{}
		if n > 0 {
			msg.Body = &pb.PeerUp_Goodbye{Goodbye: &pb.PeerGoodbye{Reason: strings.Repeat("x", n)}}
		}
		var want bytes.Buffer
		if err := pbio.NewDelimitedWriter(&want).WriteMsg(msg); err != nil {
			t.Fatal(err)
		}
		got, err := frame.Append([]byte("kept"), msg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, append([]byte("kept"), want.Bytes()...)) {
			t.Fatalf("reason of %d bytes: Append gives %d bytes, pbio %d (or they differ)", n, len(got)-4, want.Len())
		}
	}
}

// writeCounter is a real libp2p stream that counts the writes made on it.
type writeCounter struct {
	network.Stream
	writes atomic.Int64
}

func (w *writeCounter) Write(b []byte) (int, error) {
	w.writes.Add(1)
	return w.Stream.Write(b)
}

// TestStreamWritesAMessageAtOnce: between two real hosts (TLS, yamux), a
// message sent with Stream.Write is one write of the stream — one yamux
// frame, one TLS record, where pbio's writer made two of each — and the
// other end reads every message whole.
func TestStreamWritesAMessageAtOnce(t *testing.T) {
	const proto1 = protocol.ID("/jumpmesh/test/frame/1")
	const msgs = 20
	a, b := coordinatortest.LoopbackHost(t), coordinatortest.LoopbackHost(t)
	got := make(chan error, 1)
	b.SetStreamHandler(proto1, func(s network.Stream) {
		defer s.Close()
		r := frame.NewReader(s, nil, 1<<20)
		for i := range msgs {
			var up pb.PeerUp
			if err := r.ReadMsg(&up); err != nil {
				got <- err
				return
			}
			if want := strings.Repeat("y", i*100); up.GetGoodbye().GetReason() != want {
				got <- fmt.Errorf("message %d arrived with a reason of %d bytes, want %d", i, len(up.GetGoodbye().GetReason()), len(want))
				return
			}
		}
		got <- nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Connect(ctx, peer.AddrInfo{ID: b.ID(), Addrs: b.Addrs()}); err != nil {
		t.Fatal(err)
	}
	st, err := a.NewStream(ctx, b.ID(), proto1)
	if err != nil {
		t.Fatal(err)
	}
	wc := &writeCounter{Stream: st}
	ms := frame.NewStream(wc, 1<<20)
	for i := range msgs {
		msg := &pb.PeerUp{Body: &pb.PeerUp_Goodbye{Goodbye: &pb.PeerGoodbye{Reason: strings.Repeat("y", i*100)}}}
		if err := ms.Write(msg, 10*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if n := wc.writes.Load(); n != msgs {
		t.Fatalf("%d messages sent in %d writes of the stream, want one each", msgs, n)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatalf("the other end: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the other end did not read every message")
	}
}

// countingWriter counts the writes made on it and keeps their bytes.
type countingWriter struct {
	bytes.Buffer
	writes int
}

func (w *countingWriter) Write(b []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(b)
}

// TestWriterSendsPbioFramingInOneWrite: Writer's messages are pbio's bytes,
// one write each, a large message between small ones included (its buffer
// is not kept, the small ones' is reused without carrying old bytes).
func TestWriterSendsPbioFramingInOneWrite(t *testing.T) {
	var want bytes.Buffer
	got := &countingWriter{}
	w := frame.NewWriter(got)
	sizes := []int{10, 70000, 0, 300, 5}
	for _, n := range sizes {
		msg := &pb.PeerUp{Body: &pb.PeerUp_Goodbye{Goodbye: &pb.PeerGoodbye{Reason: strings.Repeat("z", n)}}}
		if err := pbio.NewDelimitedWriter(&want).WriteMsg(msg); err != nil {
			t.Fatal(err)
		}
		if err := w.WriteMsg(msg); err != nil {
			t.Fatal(err)
		}
	}
	if got.writes != len(sizes) {
		t.Fatalf("%d messages in %d writes, want one each", len(sizes), got.writes)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("Writer sent %d bytes that differ from pbio's %d", got.Len(), want.Len())
	}
}
