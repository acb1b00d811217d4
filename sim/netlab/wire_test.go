package netlab

import (
	"encoding/binary"
	"os"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// fakeDev is a frameDev fed and drained through channels.
type fakeDev struct {
	in     chan []byte    // frames the wire will read
	out    chan delivered // frames the wire wrote
	closed chan struct{}
	once   sync.Once
}

type delivered struct {
	at   time.Time
	data []byte
}

func newFakeDev() *fakeDev {
	return &fakeDev{in: make(chan []byte, 2*wireQueue), out: make(chan delivered, 2*wireQueue), closed: make(chan struct{})}
}

func (d *fakeDev) Read(p []byte) (int, error) {
	select {
	case f := <-d.in:
		return copy(p, f), nil
	case <-d.closed:
		return 0, os.ErrClosed
	}
}

func (d *fakeDev) Write(p []byte) (int, error) {
	select {
	case <-d.closed:
		return 0, os.ErrClosed
	default:
	}
	d.out <- delivered{time.Now(), append([]byte(nil), p...)}
	return len(p), nil
}

func (d *fakeDev) Close() error { d.once.Do(func() { close(d.closed) }); return nil }

func seqFrame(i int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(i)) }

func recv(t *testing.T, d *fakeDev) delivered {
	t.Helper()
	select {
	case f := <-d.out:
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no frame within 5s")
		return delivered{}
	}
}

func TestWireDelaysEachDirection(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b := newFakeDev(), newFakeDev()
	const lat = 20 * time.Millisecond
	w := newWire(a, b, Link{Latency: lat})
	defer w.Close()
	for _, dir := range []struct{ from, to *fakeDev }{{a, b}, {b, a}} {
		sent := time.Now()
		dir.from.in <- seqFrame(1)
		got := recv(t, dir.to)
		if d := got.at.Sub(sent); d < lat {
			t.Errorf("delivered after %v, want at least %v", d, lat)
		} else {
			t.Logf("configured %v, delivered after %v", lat, d)
		}
		if string(got.data) != string(seqFrame(1)) {
			t.Errorf("frame changed: %x", got.data)
		}
	}
}

// TestWireJitterKeepsOrder sends a burst through a wire whose jitter is as
// large as its latency: delays vary, but frames come out in order.
func TestWireJitterKeepsOrder(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b := newFakeDev(), newFakeDev()
	const n = 300
	w := newWire(a, b, Link{Latency: 5 * time.Millisecond, Jitter: 5 * time.Millisecond})
	defer w.Close()
	spread := time.NewTicker(time.Millisecond) // the burst spans a few delay periods
	defer spread.Stop()
	for i := range n {
		a.in <- seqFrame(i)
		if i%30 == 0 {
			<-spread.C
		}
	}
	var first, last time.Time
	for i := range n {
		f := recv(t, b)
		if got := int(binary.BigEndian.Uint32(f.data)); got != i {
			t.Fatalf("frame %d arrived in place %d: reordered", got, i)
		}
		if i == 0 {
			first = f.at
		}
		last = f.at
	}
	if last.Sub(first) <= 0 {
		t.Errorf("every frame delivered at once; jitter not applied")
	}
}

func TestWireQueueFullDrops(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	a, b := newFakeDev(), newFakeDev()
	w := newWire(a, b, Link{Latency: time.Hour}) // nothing leaves the queue
	for i := range wireQueue + 100 {
		a.in <- seqFrame(i)
	}
	poll, deadline := time.NewTicker(time.Millisecond), time.After(5*time.Second)
	defer poll.Stop()
wait:
	for w.drops.Load() < 99 {
		select {
		case <-poll.C:
		case <-deadline:
			break wait
		}
	}
	if d := w.drops.Load(); d < 99 {
		t.Errorf("%d drops with %d frames over a queue of %d", d, wireQueue+100, wireQueue)
	}
	// Close must not wait for the hour-long delay.
	start := time.Now()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// Against an hour-long delay: generous, so that a busy machine passes.
	if d := time.Since(start); d > 30*time.Second {
		t.Errorf("Close took %v", d)
	}
}
