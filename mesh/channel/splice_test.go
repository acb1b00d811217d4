package channel

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// BenchmarkSpliceBuffer is the study that chose SpliceBuffer: a forward
// made of this package's parts only (console Open + ReadStatus + Splice,
// peer Accept + Ready + dial + SendStatus + Splice) carries 256 MiB up
// and then down through loopback, for each buffer size in turn, b.N
// rounds, sizes interleaved so that a noisy machine hurts all alike. It
// reports the median MB/s per size and direction.
func BenchmarkSpliceBuffer(b *testing.B) {
	sink := bulkSink(b)
	console, pid := pairWith(b, func(c *Channel, open *pb.ChannelOpen) {
		_ = c.Ready("s", nil)
		conn, err := net.Dial("tcp", sink)
		if err != nil {
			_ = c.SendStatus(err)
			return
		}
		_ = c.SendStatus(nil)
		_, _, _ = c.Splice(context.Background(), conn)
	})
	sizes := []int64{16 << 10, 32 << 10, 64 << 10, 128 << 10, 256 << 10, 512 << 10}
	up, down := map[int64][]float64{}, map[int64][]float64{}
	defer spliceBufferSize.Store(SpliceBuffer)
	for b.Loop() {
		for _, size := range sizes {
			spliceBufferSize.Store(size)
			u, d := forwardOnce(b, console, pid, 256<<20)
			up[size], down[size] = append(up[size], u), append(down[size], d)
		}
	}
	for _, size := range sizes {
		b.ReportMetric(median(up[size]), fmt.Sprintf("up-MB/s-%dK", size>>10))
		b.ReportMetric(median(down[size]), fmt.Sprintf("down-MB/s-%dK", size>>10))
	}
}

// forwardOnce carries size bytes each way over one new forward channel,
// fed by a local TCP connection as the CLI's listener would.
func forwardOnce(b *testing.B, console host.Host, pid peer.ID, size int64) (up, down float64) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	spliced := make(chan error, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			spliced <- err
			return
		}
		c, _, err := Open(context.Background(), console, pid, &pb.ChannelOpen{})
		if err == nil {
			err = c.ReadStatus()
		}
		if err != nil {
			_ = conn.Close()
			spliced <- err
			return
		}
		_, _, err = c.Splice(context.Background(), conn)
		spliced <- err
	}()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	start := time.Now()
	if _, err := io.CopyN(client, zeroReader{}, size); err != nil {
		b.Fatal(err)
	}
	_ = client.(*net.TCPConn).CloseWrite()
	var first [1]byte
	if _, err := io.ReadFull(client, first[:]); err != nil { // the sink has read it all
		b.Fatal(err)
	}
	mid := time.Now()
	if n, err := io.Copy(io.Discard, client); err != nil || n+1 != size {
		b.Fatalf("%d bytes back of %d: %v", n+1, size, err)
	}
	end := time.Now()
	if err := <-spliced; err != nil {
		b.Fatal(err)
	}
	mb := float64(size) / 1e6
	return mb / mid.Sub(start).Seconds(), mb / end.Sub(mid).Seconds()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

// bulkSink reads everything a connection sends, then sends as many zero
// bytes back and closes.
func bulkSink(tb testing.TB) string {
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
				n, _ := io.Copy(io.Discard, c)
				_, _ = io.CopyN(c, zeroReader{}, n)
			}()
		}
	}()
	return ln.Addr().String()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }
