package channel

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// SpliceBuffer is the copy buffer of each direction of a forward, chosen
// by BenchmarkSpliceBuffer (loopback TCP, TLS, yamux, 2 CPUs; median MB/s
// of 12 rounds of 256 MiB each way, up/down): 16 KiB 1929/2084, 32 KiB
// 2018/2062, 64 KiB 2071/2287, 128 KiB 2289/2369, 256 KiB 2383/2333,
// 512 KiB 2286/2298. Throughput climbs until 128 KiB (fewer stream writes,
// each a yamux frame and encryption records) and is flat after, where a
// bigger buffer only costs memory per connection.
const SpliceBuffer = 128 << 10

// spliceBufferSize is SpliceBuffer, except in the buffer study
// (BenchmarkSpliceBuffer), which varies it.
var spliceBufferSize atomic.Int64

func init() { spliceBufferSize.Store(SpliceBuffer) }

var spliceBuffers sync.Pool

// Splice copies raw bytes both ways between the channel and conn until
// both directions have ended, then closes both. The end of one direction is
// passed on as a half-close (CloseWrite) to the other side, so a client
// that closes its sending side and then waits for the answer still gets it.
// An error in either direction, or the end of ctx, aborts both: the stream
// is reset and conn closed. fromStream counts bytes written to conn,
// toStream bytes written to the channel.
func (c *Channel) Splice(ctx context.Context, conn net.Conn) (fromStream, toStream int64, err error) {
	return splice(ctx, channelSide{c}, conn)
}

// Splice is Channel.Splice on a bulk connection instead of a channel: the same
// half-close and abort, the bulk connection closed where the stream would
// be reset. fromBulk counts bytes written to conn, toBulk bytes written to
// the bulk connection.
func (c *BulkConn) Splice(ctx context.Context, conn net.Conn) (fromBulk, toBulk int64, err error) {
	return splice(ctx, bulkSide{c}, conn)
}

// spliceSide is the encrypted side of a splice: a channel or a bulk
// connection.
type spliceSide interface {
	io.Reader
	io.Writer
	CloseWrite() error
	Close() error
	abort() error
}

type channelSide struct{ *Channel }

func (c channelSide) abort() error { return c.Reset() }

type bulkSide struct{ *BulkConn }

func (c bulkSide) abort() error { return c.Close() }

func splice(ctx context.Context, c spliceSide, conn net.Conn) (fromStream, toStream int64, err error) {
	var (
		once     sync.Once
		firstErr error
	)
	abort := func(err error) {
		once.Do(func() {
			firstErr = err
			_ = c.abort()
			_ = conn.Close()
		})
	}
	stop := context.AfterFunc(ctx, func() { abort(ctx.Err()) })
	defer stop()

	var wg sync.WaitGroup
	wg.Go(func() {
		var err error
		toStream, err = copyRaw(c, readerOnly{conn})
		if err == nil {
			err = c.CloseWrite()
		}
		if err != nil {
			abort(err)
		}
	})
	fromStream, err = copyRaw(writerOnly{conn}, c)
	if err == nil {
		err = closeWrite(conn)
	}
	if err != nil {
		abort(err)
	}
	wg.Wait()

	once.Do(func() {}) // from here on firstErr is settled
	_ = conn.Close()
	_ = c.Close()
	return fromStream, toStream, firstErr
}

// copyRaw copies until src ends. Unlike io.Copy it never hands the copy
// to a ReaderFrom or WriterTo (a net.TCPConn would fall back to a 32 KiB
// buffer), so SpliceBuffer is what is used.
func copyRaw(dst io.Writer, src io.Reader) (int64, error) {
	size := int(spliceBufferSize.Load())
	bp, _ := spliceBuffers.Get().(*[]byte)
	if bp == nil || len(*bp) != size {
		b := make([]byte, size)
		bp = &b
	}
	defer spliceBuffers.Put(bp)
	buf := *bp
	var total int64
	for {
		n, rerr := src.Read(buf)
		if n > 0 {
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr != nil {
				return total, werr
			}
		}
		if errors.Is(rerr, io.EOF) {
			return total, nil
		}
		if rerr != nil {
			return total, rerr
		}
	}
}

// closeWrite half-closes conn when its type can; otherwise the other end
// only sees the end when the whole forward ends.
func closeWrite(conn net.Conn) error {
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// readerOnly and writerOnly hide a conn's ReadFrom and WriteTo.
type readerOnly struct{ io.Reader }

type writerOnly struct{ io.Writer }
