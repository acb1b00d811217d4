package console_test

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// BenchmarkForwardThroughput moves b.N MiB each way through a forward
// (local listener → channel → peer → TCP server) and, in the same run,
// straight to the same server over loopback TCP. It reports both rates and
// their ratio per direction: up is console → target, down target → console.
func BenchmarkForwardThroughput(b *testing.B) {
	srv := startBulkServer(b)
	p := newChannelPair(b)
	local := p.forwardListener(b, "127.0.0.1", portOf(b, srv))
	size := int64(b.N) << 20
	b.ResetTimer()
	rawUp, rawDown := bulk(b, srv, size)
	fwdUp, fwdDown := bulk(b, local, size)
	b.StopTimer()
	b.ReportMetric(rawUp, "raw-up-MB/s")
	b.ReportMetric(fwdUp, "fwd-up-MB/s")
	b.ReportMetric(fwdUp/rawUp, "up-ratio")
	b.ReportMetric(rawDown, "raw-down-MB/s")
	b.ReportMetric(fwdDown, "fwd-down-MB/s")
	b.ReportMetric(fwdDown/rawDown, "down-ratio")
}

// startBulkServer serves bulk transfers: a client sends an 8-byte size
// then that many bytes and half-closes; the server counts them, then
// sends as many back and closes.
func startBulkServer(tb testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				var hdr [8]byte
				if _, err := io.ReadFull(c, hdr[:]); err != nil {
					return
				}
				n, _ := io.Copy(io.Discard, c)
				if uint64(n) == binary.BigEndian.Uint64(hdr[:]) {
					_, _ = io.CopyN(c, zeros{}, n)
				}
			}()
		}
	}()
	return ln.Addr().String()
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// bulk sends size bytes to addr and reads them back, timing each way in
// MB/s (10^6 bytes, as the testing package counts).
func bulk(tb testing.TB, addr string, size int64) (up, down float64) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	defer c.Close()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(size))
	start := time.Now()
	if _, err := c.Write(hdr[:]); err != nil {
		tb.Fatal(err)
	}
	if _, err := io.CopyN(c, zeros{}, size); err != nil {
		tb.Fatal(err)
	}
	_ = c.(*net.TCPConn).CloseWrite()
	var first [1]byte
	if _, err := io.ReadFull(c, first[:]); err != nil { // the server has counted everything
		tb.Fatal(err)
	}
	mid := time.Now()
	n, err := io.Copy(io.Discard, c)
	if err != nil || n+1 != size {
		tb.Fatalf("got %d bytes back of %d: %v", n+1, size, err)
	}
	end := time.Now()
	return float64(size) / 1e6 / mid.Sub(start).Seconds(), float64(size) / 1e6 / end.Sub(mid).Seconds()
}

// BenchmarkExecTrue is the round trip of `true` on an existing connection:
// open a channel, start the process, get its exit status.
func BenchmarkExecTrue(b *testing.B) {
	p := newChannelPair(b)
	ctx := context.Background()
	for b.Loop() {
		ch := p.open(b, execOpen(&pb.ExecOpen{Argv: []string{"true"}}))
		st, err := console.Exec(ctx, ch, console.ExecIO{})
		_ = ch.Close()
		if err != nil || st.GetCode() != 0 {
			b.Fatalf("true: %v, %v", st, err)
		}
	}
}

// BenchmarkCopy pushes a 64 MiB file per op (chunking, SHA-256 on both
// sides, the file written on the peer).
func BenchmarkCopy(b *testing.B) {
	p := newChannelPair(b)
	src, dst := b.TempDir(), b.TempDir()
	const size = 64 << 20
	if err := os.WriteFile(filepath.Join(src, "f"), make([]byte, size), 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(size)
	ctx := context.Background()
	for b.Loop() {
		ch := p.open(b, fileOpen(true, dst))
		if err := console.Push(ctx, ch, filepath.Join(src, "f"), nil); err != nil {
			b.Fatal(err)
		}
	}
}
