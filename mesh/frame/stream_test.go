package frame_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/frame"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// frame is a length prefix declaring n bytes followed by body.
func framed(n int, body []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(n)), body...)
}

// TestMsgReaderChecksLengthFirst: a declared length over the limit is
// refused before anything is read or allocated for it.
func TestMsgReaderChecksLengthFirst(t *testing.T) {
	r := frame.NewReader(bytes.NewReader(framed(4097, nil)), nil, 4096)
	err := r.ReadMsg(new(pb.Request))
	if !errors.Is(err, frame.ErrTooLarge) || !errors.Is(err, io.ErrShortBuffer) {
		t.Fatalf("4097 bytes declared, limit 4096: %v", err)
	}
}

// TestMsgReaderAllocatesWhatArrives: a caller that declares 1 MiB and sends
// 100 bytes makes the reader allocate about what it sent, not 1 MiB
// (go-msgio allocated the declared length up front).
func TestMsgReaderAllocatesWhatArrives(t *testing.T) {
	const runs = 50
	in := framed(1<<20, make([]byte, 100))
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range runs {
		err := frame.NewReader(bytes.NewReader(in), nil, 1<<20).ReadMsg(new(pb.Request))
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("truncated message: %v", err)
		}
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / runs; per > 128<<10 {
		t.Fatalf("%d bytes allocated per truncated 1 MiB message, want < 128 KiB", per)
	}
}

// scope is a resource scope that grants up to limit bytes.
type scope struct{ used, limit int }

func (s *scope) ReserveMemory(n int, _ uint8) error {
	if s.used+n > s.limit {
		return errors.New("resource limit exceeded")
	}
	s.used += n
	return nil
}

func (s *scope) ReleaseMemory(n int) { s.used -= n }

// TestMsgReaderChargesItsScope: a large message is charged to the stream's
// resource scope while it is decoded, refused when the scope has no room,
// and released afterwards.
func TestMsgReaderChargesItsScope(t *testing.T) {
	req := &pb.Request{Body: &pb.Request_Login{Login: &pb.LoginRequest{Code: strings.Repeat("c", 300<<10)}}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	in := framed(len(b), b)
	small := &scope{limit: 256 << 10}
	if err := frame.NewReader(bytes.NewReader(in), small, control.MaxMessage).ReadMsg(new(pb.Request)); err == nil {
		t.Fatal("a 300 KiB message was read in a scope of 256 KiB")
	}
	big := &scope{limit: 1 << 20}
	var got pb.Request
	if err := frame.NewReader(bytes.NewReader(append(in, in...)), big, control.MaxMessage).ReadMsg(&got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, req) || big.used != 0 {
		t.Fatalf("decoded equal: %v; %d bytes still charged", proto.Equal(&got, req), big.used)
	}
}

// TestMsgReaderAllocateDeclared: a reader told to trust the declared
// length reads a 190 KB message (a list of 1,000 peers) into one buffer of
// that length (312 KB in three when grown as it arrives), still refuses a
// length past its limit before reading anything, and reports a message
// cut short.
func TestMsgReaderAllocateDeclared(t *testing.T) {
	const runs = 20
	req := &pb.Request{Body: &pb.Request_Login{Login: &pb.LoginRequest{Code: strings.Repeat("c", 190_000)}}}
	b, err := proto.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	in := framed(len(b), b)
	perRun := func(declared bool) uint64 {
		var got pb.Request
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for range runs {
			r := frame.NewReader(bytes.NewReader(in), nil, control.MaxMessage)
			if declared {
				r.AllocateDeclared()
			}
			if err := r.ReadMsg(&got); err != nil {
				t.Fatal(err)
			}
		}
		runtime.ReadMemStats(&after)
		if !proto.Equal(&got, req) {
			t.Fatal("decoded another message")
		}
		return (after.TotalAlloc - before.TotalAlloc) / runs
	}
	grown, declared := perRun(false), perRun(true)
	// The decoded string (190 KB) and a few KB are in both; a large
	// allocation is rounded up to whole pages.
	if grown-declared < 100<<10 || declared > uint64(2*len(b)+24<<10) {
		t.Fatalf("%d bytes allocated per message read as declared, %d grown; want one buffer of %d", declared, grown, len(b))
	}
	r := frame.NewReader(bytes.NewReader(framed(1<<40, nil)), nil, control.MaxMessage).AllocateDeclared()
	if err := r.ReadMsg(new(pb.Request)); !errors.Is(err, frame.ErrTooLarge) {
		t.Fatalf("2^40 bytes declared: %v", err)
	}
	r = frame.NewReader(bytes.NewReader(framed(len(b), b[:1000])), nil, control.MaxMessage).AllocateDeclared()
	if err := r.ReadMsg(new(pb.Request)); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("cut short: %v", err)
	}
}
