package tunnel

import (
	"io"
	"net"
	"sync"
	"time"
)

// A jumpoint carries one tunnel for every peer behind it, for as long as
// the peer runs, and nearly all of them are idle: a statistics message now
// and then. io.Copy would hold a 32 KiB buffer per direction in every one
// of them (64 KiB a peer, more than the whole connection costs). So each
// direction reads into a small buffer of its own while traffic is light,
// takes a large buffer from a pool when a read fills the small one (bulk
// data: a copy, a forward), and gives it back when a read comes in under
// the small size again.
const (
	smallBuffer = 1 << 10
	// largeBuffer is the relay's copy buffer: throughput is flat from
	// 16 KiB on (docs/performance.md, "Relayed sessions").
	largeBuffer = 32 << 10
)

var largeBuffers = sync.Pool{New: func() any { b := make([]byte, largeBuffer); return &b }}

// pipe copies src to dst until src ends (nil at EOF) or either fails,
// through limit when it is not nil, and returns the bytes written. A wait
// for the limit ends with net.ErrClosed when done closes.
func pipe(dst io.Writer, src io.Reader, limit *bucket, done <-chan struct{}) (int64, error) {
	small := make([]byte, smallBuffer)
	var large *[]byte
	defer func() {
		if large != nil {
			largeBuffers.Put(large)
		}
	}()
	buf := small
	var total int64
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if limit != nil && !limit.wait(n, done) {
				return total, net.ErrClosed
			}
			w, werr := dst.Write(buf[:n])
			total += int64(w)
			if werr == nil && w < n {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		switch {
		case large == nil && n == len(small):
			large = largeBuffers.Get().(*[]byte)
			buf = *large
		case large != nil && n < smallBuffer:
			largeBuffers.Put(large)
			large, buf = nil, small
		}
	}
}

// bucket is one direction's token bucket of bytes. A read that takes more
// tokens than there are leaves a debt, which the direction sleeps off
// before it writes: over any span, at most rate × span + burst bytes go
// through. Each direction has its own, used by one goroutine.
type bucket struct {
	rate, burst, tokens float64
	last                time.Time
}

// newBucket starts full. The burst is the large copy buffer, or one
// second's worth when that is less.
func newBucket(rate int64) *bucket {
	burst := float64(min(rate, largeBuffer))
	return &bucket{rate: float64(rate), burst: burst, tokens: burst, last: time.Now()}
}

// wait takes n tokens, sleeping off any debt; false if done closed first.
func (b *bucket) wait(n int, done <-chan struct{}) bool {
	now := time.Now()
	b.tokens = min(b.burst, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	b.tokens -= float64(n)
	if b.tokens >= 0 {
		return true
	}
	t := time.NewTimer(time.Duration(-b.tokens / b.rate * float64(time.Second)))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-done:
		return false
	}
}
