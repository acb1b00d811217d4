package coordinator

import (
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// handshakeGate bounds the inbound TCP connections in their security
// handshake at once, and adapts the bound to what the machine serves.
//
// Without it, every connection of a storm starts its TLS handshake at
// once: 2,000 peers share 2 cores, each handshake takes seconds of wall
// time, many pass the dialer's timeout after the coordinator spent most of
// their CPU, and their retries spend it again (BenchmarkRegistrations on
// 2 cores: 56–68 registrations/s and ~190 failed attempts with 2,000 peers,
// against 301/s with 300). With it, libp2p's accept loop waits in
// OpenConnection while the bound is reached, so the connections past it
// wait in the kernel's accept queue, where they cost nothing, and each
// handshake that starts finishes quickly: the coordinator serves at the
// rate the machine can, whatever the size of the storm. Dialers wait
// their turn (peers dial their coordinator patiently, mesh.HostConfig's
// PatientDials); the accept queue is the kernel's (somaxconn, 4,096 on
// Debian), and past it the kernel drops SYNs, which the dialer's TCP
// retransmits.
//
// The bound adapts as a latency gradient (the method of Netflix's
// concurrency-limits): each handshake's time from accept to the remote's
// identity (SetPeer) is a sample; the least sample of the last minute is
// the time of a handshake that did not queue for CPU. While samples stay
// within twice that, the bound grows; above, it shrinks in proportion.
// It starts low (the handshakes of a cold start measure the machine) and
// stays between GOMAXPROCS and Resources.MaxHandshakes.
//
// A connection holds its place only until its identity is known, it ends,
// or four unloaded handshakes' time passes (at least 20 ms, at most
// Resources.HandshakeHold, 1 s; the hold until a first sample): a slow
// handshake then runs on without a place. A stranger who opens TCP
// connections and sends nothing delays the others by that hold per place
// and never shrinks the bound (only completed handshakes are samples);
// to stall the gate it must open bound ÷ hold connections a second, as
// many as it takes to fill any server's accept queue.
// TestSilentConnectionsDelayOthersBoundedly performs it.
type handshakeGate struct {
	network.ResourceManager

	hold time.Duration
	min  float64
	max  float64

	mu       sync.Mutex
	cond     *sync.Cond
	limit    float64
	inFlight int
	closed   bool
	// least is the least sample of the current window, prevLeast of the
	// one before; a window lasts gateWindow.
	least, prevLeast time.Duration
	windowEnd        time.Time

	// Counters for /metrics and tests.
	waited, samples, released int64
}

const (
	gateWindow    = 30 * time.Second
	gateMinHold   = 20 * time.Millisecond
	gateTolerance = 2.0
	// gateSmoothing is how much of a new estimate the bound takes.
	gateSmoothing = 0.2
)

func newHandshakeGate(rm network.ResourceManager, maxHandshakes int, hold time.Duration) *handshakeGate {
	lo := float64(max(2, runtime.GOMAXPROCS(0)))
	hi := math.Max(lo, float64(maxHandshakes))
	g := &handshakeGate{ResourceManager: rm, hold: hold, min: lo, max: hi, limit: math.Min(hi, 2*lo)}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// OpenConnection waits for a place for an inbound TCP connection, then
// opens its scope. Other connections pass at once: outbound ones, and
// QUIC, whose handshake runs inside quic-go before this is called and
// must not hold up its packet loop.
func (g *handshakeGate) OpenConnection(dir network.Direction, usefd bool, endpoint ma.Multiaddr) (network.ConnManagementScope, error) {
	if dir != network.DirInbound || !isTCP(endpoint) {
		return g.ResourceManager.OpenConnection(dir, usefd, endpoint)
	}
	if !g.acquire() {
		return g.ResourceManager.OpenConnection(dir, usefd, endpoint) // closing: no bound
	}
	scope, err := g.ResourceManager.OpenConnection(dir, usefd, endpoint)
	if err != nil {
		g.release()
		return nil, err
	}
	p := &gatedScope{ConnManagementScope: scope, gate: g, start: time.Now()}
	p.timer = time.AfterFunc(g.holdFor(), p.heldTooLong)
	return p, nil
}

func isTCP(a ma.Multiaddr) bool {
	if a == nil {
		return false
	}
	_, err := a.ValueForProtocol(ma.P_TCP)
	return err == nil
}

// acquire waits for a place; false once the gate is closed.
func (g *handshakeGate) acquire() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if float64(g.inFlight) >= math.Floor(g.limit) && !g.closed {
		g.waited++
	}
	for float64(g.inFlight) >= math.Floor(g.limit) && !g.closed {
		g.cond.Wait()
	}
	if g.closed {
		return false
	}
	g.inFlight++
	return true
}

// release gives a place back.
func (g *handshakeGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.inFlight--
	g.released++
	g.cond.Broadcast()
}

// sample takes a completed handshake's time.
func (g *handshakeGate) sample(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.adapt(d, time.Now())
	g.cond.Broadcast() // the bound may have grown
}

// adapt moves the bound after a sample (under mu).
func (g *handshakeGate) adapt(sample time.Duration, now time.Time) {
	g.samples++
	if now.After(g.windowEnd) {
		g.prevLeast, g.least = g.least, 0
		g.windowEnd = now.Add(gateWindow)
	}
	if g.least == 0 || sample < g.least {
		g.least = sample
	}
	base := g.baseLocked()
	// The limit's estimate: as many as fit while a handshake takes at
	// most tolerance × base, plus a queue of √limit to keep probing.
	gradient := math.Min(1, gateTolerance*float64(base)/float64(sample))
	estimate := g.limit*gradient + math.Sqrt(g.limit)
	g.limit = math.Max(g.min, math.Min(g.max, (1-gateSmoothing)*g.limit+gateSmoothing*estimate))
}

// holdFor is how long the next connection may hold its place: four times
// an unloaded handshake, at least gateMinHold, at most the configured hold
// (until a first sample, the configured hold).
func (g *handshakeGate) holdFor() time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	base := g.baseLocked()
	if base == 0 {
		return g.hold
	}
	return min(g.hold, max(gateMinHold, 4*base))
}

func (g *handshakeGate) baseLocked() time.Duration {
	base := g.least
	if g.prevLeast > 0 && (base == 0 || g.prevLeast < base) {
		base = g.prevLeast
	}
	return base
}

// close lets every waiter through and stops bounding.
func (g *handshakeGate) close() {
	g.mu.Lock()
	g.closed = true
	g.cond.Broadcast()
	g.mu.Unlock()
}

// GateStats is what the handshake gate has done.
type GateStats struct {
	// Limit is the bound now; InFlight the connections holding a place.
	Limit    int
	InFlight int
	// Waited counts connections that found the bound reached; Samples
	// the completed handshakes measured; Least the least of those of the
	// last minute.
	Waited, Samples int64
	Least           time.Duration
}

func (g *handshakeGate) stats() GateStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return GateStats{Limit: int(g.limit), InFlight: g.inFlight, Waited: g.waited, Samples: g.samples, Least: g.baseLocked()}
}

// gatedScope is a connection's scope while it may hold a place.
type gatedScope struct {
	network.ConnManagementScope
	gate  *handshakeGate
	start time.Time
	timer *time.Timer

	placeOnce, sampleOnce sync.Once
}

// giveBack returns the place once: identified or ended. It runs after
// OpenConnection returned the scope, so p.timer is set.
func (p *gatedScope) giveBack() {
	p.placeOnce.Do(func() {
		p.timer.Stop()
		p.gate.release()
	})
}

// heldTooLong is the hold's timer: it must not read p.timer, which
// OpenConnection may still be setting.
func (p *gatedScope) heldTooLong() { p.placeOnce.Do(p.gate.release) }

func (p *gatedScope) SetPeer(id peer.ID) error {
	err := p.ConnManagementScope.SetPeer(id)
	if err == nil {
		// A handshake that outlasted its hold is a sample too: the slow
		// ones are what shrinks the bound.
		p.sampleOnce.Do(func() { p.gate.sample(max(time.Since(p.start), time.Microsecond)) })
	}
	p.giveBack()
	return err
}

func (p *gatedScope) Done() {
	p.giveBack()
	p.ConnManagementScope.Done()
}
