package netlab

import (
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// frameDev is one end of a wire: a TAP device in the lab, a fake in tests.
// Read returns one whole frame; Close makes a blocked Read return.
type frameDev interface {
	Read(p []byte) (int, error)
	Write(p []byte) (int, error)
	Close() error
}

// wireQueue bounds the frames in flight in one direction; a full queue drops
// the newest frame, as a router's tail-drop queue does.
const wireQueue = 4096

// maxFrame is larger than any frame a TAP without offloads hands us.
const maxFrame = 65536

// wire carries frames between two devices, each way through its own delay
// queue. Delay is Latency plus a uniform sample in [-Jitter, +Jitter], but a
// frame never overtakes the one before it: TCP and QUIC treat reordering as
// loss, and a real path seldom reorders.
type wire struct {
	a, b   frameDev
	link   Link
	stop   chan struct{}
	wg     sync.WaitGroup
	once   sync.Once
	drops  atomic.Uint64 // frames dropped because a queue was full
	errs   atomic.Uint64 // frames the far device refused
	closed atomic.Bool
}

type frame struct {
	at   time.Time
	data []byte
}

func newWire(a, b frameDev, link Link) *wire {
	w := &wire{a: a, b: b, link: link, stop: make(chan struct{})}
	w.direction(a, b)
	w.direction(b, a)
	return w
}

func (w *wire) direction(src, dst frameDev) {
	q := make(chan frame, wireQueue)
	w.wg.Add(2)
	go func() {
		defer w.wg.Done()
		defer close(q)
		w.read(src, q)
	}()
	go func() {
		defer w.wg.Done()
		w.write(dst, q)
	}()
}

// read stamps each frame with its delivery time as it arrives.
func (w *wire) read(src frameDev, q chan<- frame) {
	buf := make([]byte, maxFrame)
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	var last time.Time
	for {
		n, err := src.Read(buf)
		if err != nil {
			return // closed, or the device went away with its namespace
		}
		now := time.Now()
		at := now.Add(w.sample(rng))
		if at.Before(last) {
			at = last
		}
		last = at
		f := frame{at: at, data: append([]byte(nil), buf[:n]...)}
		select {
		case q <- f:
		default:
			w.drops.Add(1)
		}
	}
}

func (w *wire) sample(rng *rand.Rand) time.Duration {
	d := w.link.Latency
	if j := w.link.Jitter; j > 0 {
		d += time.Duration(rng.Int64N(int64(2*j)+1)) - j
	}
	return d
}

// write delivers each frame at its time. A frame the device refuses (it may
// be down for a moment) is dropped, like on a cable.
func (w *wire) write(dst frameDev, q <-chan frame) {
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for f := range q {
		if d := time.Until(f.at); d > 0 {
			t.Reset(d)
			select {
			case <-t.C:
			case <-w.stop:
				return
			}
		}
		if _, err := dst.Write(f.data); err != nil {
			if w.closed.Load() {
				return
			}
			w.errs.Add(1)
		}
	}
}

// Close stops the wire and closes both devices, then waits for its
// goroutines. It is idempotent.
func (w *wire) Close() error {
	var err error
	w.once.Do(func() {
		w.closed.Store(true)
		close(w.stop)
		err = errors.Join(w.a.Close(), w.b.Close())
		w.wg.Wait()
	})
	return err
}
