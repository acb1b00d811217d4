package coordinator

import (
	"math"
	"net"
	"runtime"
	rtmetrics "runtime/metrics"
	"sync"
	"sync/atomic"
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
// against 301/s with 300). With it, the connections past the bound wait,
// where they cost little, and each handshake that starts finishes
// quickly: the coordinator serves at the rate the machine can, whatever
// the size of the storm. Dialers wait their turn (peers dial their
// coordinator patiently, mesh.HostConfig's PatientDials).
//
// Where they wait: in the gate's waiting room, first come first served.
// libp2p's accept loop takes each connection out of the kernel's accept
// queue at once (OpenConnection) and the connection waits for its place
// as its security handshake starts (gatedSecurity, awaitPlace), on its own
// goroutine. Before, the accept loop itself waited for a place, and the
// connections waited in the kernel's queue: it holds somaxconn (4,096 on
// Debian), and past it the kernel drops SYNs, which the dialer resends 1,
// 3, 7 s later — 5,000 peers at once on 2 cores dropped 1,902 and took
// ~25 % longer (docs/performance.md, session 28). libp2p's upgrader gives
// a connection 15 s from accept to the end of its handshakes, waiting
// included, so the room holds what the gate serves in gateRoomWait at the
// rate it last served with a queue (countServed; gateRoomMin before it
// knows one); when it is full the accept loop waits as before, and the
// kernel's queue comes after the room's.
//
// The bound adapts as a latency gradient (the method of Netflix's
// concurrency-limits) on the coordinator's own CPU queue: the time its
// goroutines wait, runnable, for a core (the runtime's scheduling
// latencies, read at most every gateSchedEvery while handshakes complete).
// While their 90th percentile stays within gateSchedTarget, the bound
// grows; above, it shrinks in proportion — unless the machine's cores
// idled meanwhile while the coordinator's own did not run full (idle
// cores, cpuProbe): then the wait was the kernel sharing the cores with
// another process's threads, not a queue for CPU, and the bound grows, up
// to gateIdlePerCore places per core. It
// starts low and stays between GOMAXPROCS (at least 2) and
// Resources.MaxHandshakes.
//
// Why the idle cores: a handshake holds its place for its round trips and
// the remote's share of the work (half its time with a peer as fast as
// the coordinator), so a few places leave cores idle whatever the CPU
// queue says — cores busy ≈ bound × CPU per handshake ÷ (a place's time ×
// cores). The gradient alone settles where the bound is
// (1 ÷ (1 − target ÷ p90))², and on 2 cores shared with another busy
// process (the benchmark's fleet, another service) the kernel's time
// slices alone put the p90 at 3–8 ms: the bound ended at 8, 8, 6 and 5
// places after the sweep's 300, 1,000, 2,000 and 5,000 peers on a quiet
// machine, the cores 0.86, 0.87, 0.83 and 0.67 busy, and 5,000 came at 194
// registrations/s against 276 at 1,000 (collapse-ratio 0.70, session 25,
// 32894dd; 0.79 and 1.00 in the runs after it). A floor of 4 places per
// core instead kept the cores busy, but on a loaded machine (load 21) it
// doubled a technician's ls during a storm (p50 48–108 ms against 19–20):
// there the cores never idle, and the gradient holds the bound low as it
// should. A handshake's own time (accept to the remote's identity,
// SetPeer) is no signal for it: it holds the remote's share and the round
// trips, so a slow or distant peer, or a benchmark's fleet sharing the
// machine, made it 10–15 × the least one while the coordinator used 0.4 of
// its 2 cores, and the bound sat at its floor of 2
// (BenchmarkRegistrationSweep on a quiet machine: goodput fell from 123/s
// at 1,000 peers to 88/s at 2,000, 4.7 ms of CPU each). Waiting goroutines
// are what a technician's request waits behind, too: keeping them few
// keeps its answer prompt during a storm.
//
// Technicians first: while a member's control request is served, no new
// handshake starts (prioritize), for at most gatePriorityHold per request
// and gatePriorityShare of the time in all.
//
// A connection holds its place only until its identity is known, it ends,
// or four unloaded handshakes' time passes (at least 20 ms, at most
// Resources.HandshakeHold, 1 s; the hold until a first sample): a slow
// handshake then runs on without a place. A stranger who opens TCP
// connections, starts a handshake and stalls delays the others by that
// hold per place and never shrinks the bound (only completed handshakes
// are samples); to stall the gate it must open bound ÷ hold connections a
// second, as many as it takes to fill any server's accept queue. One that
// sends nothing takes no place, and a space of the room for gateRoomGrace
// only (a peer's handshake starts within a round trip): to fill the room
// it must open gateRoomMin or more connections a second.
// TestSilentConnectionsDelayOthersBoundedly performs both.
//
// The members' lane (lane.go) is a TCP port of its own: a connection
// accepted there takes one of gateLanePlaces places of its own and waits
// neither for the bound nor for a member's request, so a technician's
// console does not queue behind a storm's peers.
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
	// starting holds every inbound connection (TCP, of the lane too, and
	// QUIC) until the coordinator's handlers are set (holdUntilOpen, open);
	// startWaited is closed when the first one waits.
	starting    bool
	startWaited chan struct{}
	// least is the least sample of the current window, prevLeast of the
	// one before; a window lasts gateWindow.
	least, prevLeast time.Duration
	windowEnd        time.Time
	// sched reads the scheduling latency (the 90th percentile since its
	// last call; ok false: too few events to tell); schedNext is when it
	// is read next, schedP90 its last reading.
	sched     func() (p90 time.Duration, ok bool)
	schedNext time.Time
	schedP90  time.Duration
	// cpu reads, since its last call, the machine's idle share of its
	// cores and this process's CPU as a share of GOMAXPROCS (ok false:
	// not known, as off Linux); idleGrew counts readings whose idle cores
	// let the bound grow over a latency above the target.
	cpu      func() (idle, self float64, ok bool)
	idleGrew int64
	// idleMax bounds what idle cores alone grow the bound to
	// (gateIdlePerCore × GOMAXPROCS).
	idleMax float64

	// serving counts members' control requests being served (prioritize);
	// while it is above 0 no place is given. budget is how long such
	// pauses may still last, refilled at gatePriorityShare of the time
	// up to gatePriorityBurst, as of budgetAt.
	serving  int
	budget   time.Duration
	budgetAt time.Time

	// lane tells the connections of the members' lane; laneInFlight
	// counts those holding one of its places, laneWaited those that found
	// them taken.
	lane         *memberLane
	laneInFlight int
	laneWaited   int64

	// The waiting room: inbound TCP connections taken from the kernel's
	// accept queue that wait for a place. fresh holds, in order, when
	// each of those whose security handshake has not started was accepted
	// (they count for gateRoomGrace only); queue holds the handshakes that
	// wait for a place, in order, queued of them still waiting. The room
	// is the two; roomPeak the most at once, roomFull the times the accept
	// loop waited for space, timedOut the handshakes that gave up waiting.
	// transient is Resources.MaxHandshakes, the resource manager's bound
	// on connections not yet identified, which the room's count in.
	fresh     []time.Time
	queue     []*place
	queued    int
	roomPeak  int
	roomFull  int64
	timedOut  int64
	transient int
	// pending counts the main port's inbound TCP connections from their
	// scope's opening until the remote's identity is known or they end:
	// what they hold of the resource manager's transient bound, fresh or
	// not. The accept loop waits while they and the lane's fill it (less
	// gateTransientSpare): a connection whose negotiation had not started
	// a second after its accept (a storm of 20,000 on two cores) left the
	// room's count while still holding its transient connection, the room
	// let more in, and the resource manager refused them (2,302 in a
	// restart of 20,000 peers: resets, failed attempts the peers backed
	// off from) where they now wait in the kernel's accept queue.
	pending int
	// accepted holds the TCP connections the gater let through
	// (noteAccepted), by remote address, until OpenConnection, just after
	// on the same accept loop, starts their negotiation's clock.
	accepted map[string][]net.Conn
	// rate is the handshakes completed per second while connections
	// waited (the room's capacity follows it); served counts those of
	// the current second, from servedAt.
	rate     float64
	served   int
	servedAt time.Time

	// Counters for /metrics and tests; ends counts the resource
	// manager's refusals (peerends.go).
	waited, samples, released int64
	unidentified              int64
	ends                      peerEnds
}

const (
	gateWindow  = 30 * time.Second
	gateMinHold = 20 * time.Millisecond
	// gateSmoothing is how much of a new estimate the bound takes.
	gateSmoothing = 0.2
	// gateSchedTarget is the scheduling latency (90th percentile) the
	// bound keeps to, read every gateSchedEvery.
	gateSchedTarget = 2 * time.Millisecond
	gateSchedEvery  = 100 * time.Millisecond
	// A member's request pauses the gate for at most gatePriorityHold, and
	// all such pauses take at most gatePriorityShare of the time (within
	// a burst of gatePriorityBurst): peers are never shut out.
	gatePriorityHold  = 100 * time.Millisecond
	gatePriorityShare = 0.5
	gatePriorityBurst = time.Second
	// gateIdleShare is the machine's idle share of its cores, and
	// gateSelfShare the coordinator's own CPU as a share of GOMAXPROCS,
	// at and below which a scheduling latency above the target does not
	// shrink the bound (idle cores: see handshakeGate).
	gateIdleShare = 0.15
	gateSelfShare = 0.85
	// gateIdlePerCore bounds, per core (GOMAXPROCS), how far idle cores
	// alone grow the bound: twice the places per core at which the quiet
	// sweep kept the cores busy (4), so that a burst of handshakes let in
	// while the cores idled stays a few per core.
	gateIdlePerCore = 8
	// gateLanePlaces bounds the members' lane's handshakes at once, beside
	// the bound: a stranger who found the lane takes at most this many.
	gateLanePlaces = 2
)

func newHandshakeGate(rm network.ResourceManager, maxHandshakes int, hold time.Duration) *handshakeGate {
	lo := float64(max(2, runtime.GOMAXPROCS(0)))
	hi := math.Max(lo, float64(maxHandshakes))
	g := &handshakeGate{ResourceManager: rm, hold: hold, min: lo, max: hi, limit: math.Min(hi, 2*lo), sched: newSchedProbe().p90,
		cpu: newCPUProbe().read, budget: gatePriorityBurst, budgetAt: time.Now()}
	g.idleMax = math.Min(hi, float64(gateIdlePerCore*max(1, runtime.GOMAXPROCS(0))))
	g.cond = sync.NewCond(&g.mu)
	g.transient = maxHandshakes
	g.accepted = make(map[string][]net.Conn)
	return g
}

// OpenConnection takes an inbound TCP connection into the waiting room
// (it waits only while the room is full, leaving the connection in the
// kernel's accept queue), then opens its scope; the connection waits for
// its place when its security handshake starts (awaitPlace). A connection
// of the members' lane waits here for one of the lane's places. Other
// connections pass at once: outbound ones, and QUIC, whose handshake runs
// inside quic-go before this is called and must not hold up its packet
// loop — except while the coordinator starts (holdUntilOpen): then every
// inbound connection waits, QUIC too, which holds up quic-go's accepting of
// new connections (not the packets of those it has) until New has set the
// handlers; New dials nothing over QUIC meanwhile.
func (g *handshakeGate) OpenConnection(dir network.Direction, usefd bool, endpoint ma.Multiaddr) (network.ConnManagementScope, error) {
	if dir == network.DirInbound {
		g.awaitOpen()
	}
	if dir != network.DirInbound || !isTCP(endpoint) {
		scope, err := g.ResourceManager.OpenConnection(dir, usefd, endpoint)
		if err != nil {
			g.ends.refusedConns.Add(1)
		}
		return scope, err
	}
	if g.lane.take(endpoint) {
		defer g.startNegotiation(endpoint)
		if !g.acquireLane() {
			return g.ResourceManager.OpenConnection(dir, usefd, endpoint) // closing: no bound
		}
		scope, err := g.ResourceManager.OpenConnection(dir, usefd, endpoint)
		if err != nil {
			g.ends.refusedConns.Add(1)
			g.release(true)
			return nil, err
		}
		pl := &place{gate: g, lane: true}
		g.mu.Lock()
		g.placeLocked(pl)
		g.mu.Unlock()
		return &gatedScope{ConnManagementScope: scope, gate: g, lane: pl}, nil
	}
	g.enterRoom()
	g.startNegotiation(endpoint)
	scope, err := g.ResourceManager.OpenConnection(dir, usefd, endpoint)
	if err != nil {
		g.ends.refusedConns.Add(1)
		g.unpend()
		return nil, err
	}
	return &gatedScope{ConnManagementScope: scope, gate: g, pending: true}, nil
}

// unpend ends a connection's count in pending (enterRoom took it).
func (g *handshakeGate) unpend() {
	g.mu.Lock()
	g.pending--
	g.cond.Broadcast()
	g.mu.Unlock()
}

func isTCP(a ma.Multiaddr) bool {
	if a == nil {
		return false
	}
	_, err := a.ValueForProtocol(ma.P_TCP)
	return err == nil
}

// acquireLane waits for one of the members' lane's places, on the lane's
// accept loop (at most its own few wait); false once the gate is closed.
// The bound's places are the queue's (awaitPlace).
func (g *handshakeGate) acquireLane() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.laneInFlight >= gateLanePlaces && !g.closed {
		g.laneWaited++
	}
	for g.laneInFlight >= gateLanePlaces && !g.closed {
		g.cond.Wait()
	}
	if g.closed {
		return false
	}
	g.laneInFlight++
	return true
}

// placesTakenLocked reports whether the bound's places are all taken, or
// paused for a member's request (prioritize).
func (g *handshakeGate) placesTakenLocked() bool {
	return float64(g.inFlight) >= math.Floor(g.limit) || g.serving > 0
}

// prioritize pauses the gate while a member's control request (a
// technician's ls or jump, a relay's report) is served: no new handshake
// starts until it is answered, at most gatePriorityHold, so the request
// does not share the cores with handshakes that came after it (during a
// storm the gate always has connections waiting). The handshakes in
// progress go on. The pauses together take at most gatePriorityShare of
// the time; past that budget a request pauses nothing. done ends the
// pause; it may be called more than once.
func (g *handshakeGate) prioritize() (done func()) {
	g.mu.Lock()
	now := time.Now()
	g.budget = min(gatePriorityBurst, g.budget+time.Duration(float64(now.Sub(g.budgetAt))*gatePriorityShare))
	g.budgetAt = now
	if g.budget <= 0 || g.closed {
		g.mu.Unlock()
		return func() {}
	}
	g.serving++
	g.mu.Unlock()
	var once sync.Once
	end := func() {
		once.Do(func() {
			g.mu.Lock()
			defer g.mu.Unlock()
			g.serving--
			g.budget -= time.Since(now)
			g.dispatchLocked()
			g.cond.Broadcast()
		})
	}
	t := time.AfterFunc(gatePriorityHold, end)
	return func() { t.Stop(); end() }
}

// release gives a place back.
func (g *handshakeGate) release(lane bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.releaseLocked(lane)
}

func (g *handshakeGate) releaseLocked(lane bool) {
	if lane {
		g.laneInFlight--
		g.cond.Broadcast()
		return
	}
	g.inFlight--
	g.released++
	g.dispatchLocked()
	g.cond.Broadcast()
}

// sample takes a completed handshake's time.
func (g *handshakeGate) sample(d time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	g.adapt(d, now)
	g.countServed(now)
	g.dispatchLocked() // the bound may have grown
	g.cond.Broadcast() // and the room
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
	if now.Before(g.schedNext) {
		return
	}
	g.schedNext = now.Add(gateSchedEvery)
	p90, ok := g.sched()
	if !ok {
		return
	}
	g.schedP90 = p90
	// The limit's estimate: as many as fit while goroutines wait at most
	// the target for a core, plus a queue of √limit to keep probing.
	gradient := math.Min(1, float64(gateSchedTarget)/float64(max(p90, time.Microsecond)))
	if g.cpu != nil {
		// Read at every reading, so each covers the same interval.
		if idle, self, ok := g.cpu(); ok && gradient < 1 && idle >= gateIdleShare && self <= gateSelfShare && g.limit < g.idleMax {
			gradient = 1 // idle cores: the wait was the kernel's time slices
			g.idleGrew++
		}
	}
	estimate := g.limit*gradient + math.Sqrt(g.limit)
	g.limit = math.Max(g.min, math.Min(g.max, (1-gateSmoothing)*g.limit+gateSmoothing*estimate))
}

// schedProbe reads the runtime's histogram of goroutine scheduling
// latencies (runtime/metrics), as differences between readings.
type schedProbe struct {
	sample []rtmetrics.Sample
	last   []uint64
}

func newSchedProbe() *schedProbe {
	return &schedProbe{sample: []rtmetrics.Sample{{Name: "/sched/latencies:seconds"}}}
}

// p90 is the 90th percentile of the latencies since the last reading
// (the upper bound of its bucket); ok is false below 64 events, which the
// next call counts again.
func (p *schedProbe) p90() (time.Duration, bool) {
	rtmetrics.Read(p.sample)
	if p.sample[0].Value.Kind() != rtmetrics.KindFloat64Histogram {
		return 0, false
	}
	h := p.sample[0].Value.Float64Histogram()
	last := p.last
	if len(last) != len(h.Counts) {
		p.last = append(p.last[:0:0], h.Counts...)
		return 0, false
	}
	var total uint64
	for i, c := range h.Counts {
		total += c - last[i]
	}
	if total < 64 {
		return 0, false // the next reading takes these events too
	}
	var seen uint64
	var p90 time.Duration
	for i, c := range h.Counts {
		if seen += c - last[i]; seen*10 >= total*9 {
			upper := h.Buckets[i+1]
			if math.IsInf(upper, 1) {
				upper = h.Buckets[i]
			}
			p90 = time.Duration(upper * float64(time.Second))
			break
		}
	}
	copy(p.last, h.Counts)
	return p90, true
}

// holdForLocked is how long the next place may be held: four times
// an unloaded handshake, at least gateMinHold, at most the configured hold
// (until a first sample, the configured hold).
func (g *handshakeGate) holdForLocked() time.Duration {
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

// holdUntilOpen makes the gate hold every inbound connection, TCP and
// QUIC, until open. libp2p listens as its host starts, before the coordinator has
// loaded its registry and set its stream handlers: a peer of a storm that
// connected in between opened its stream on a host that did not speak
// the peer protocol yet, and failed its attempt ("protocols not
// supported"; 16 of 2,000 in a reconnect storm on a fast machine). Held
// here, a TCP connection waits in the kernel's accept queue, as the
// storm's others do, and a QUIC one in its listener's.
func (g *handshakeGate) holdUntilOpen() {
	g.mu.Lock()
	g.starting = true
	g.startWaited = make(chan struct{})
	g.mu.Unlock()
}

// awaitOpen returns once the gate is open or closed (holdUntilOpen).
func (g *handshakeGate) awaitOpen() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.starting && !g.closed {
		g.waited++
		select {
		case <-g.startWaited:
		default:
			close(g.startWaited)
		}
	}
	for g.starting && !g.closed {
		g.cond.Wait()
	}
}

// open lets connections in (holdUntilOpen).
func (g *handshakeGate) open() {
	g.mu.Lock()
	g.starting = false
	g.cond.Broadcast()
	g.mu.Unlock()
}

// close lets every waiter through and stops bounding.
func (g *handshakeGate) close() {
	g.mu.Lock()
	g.closed = true
	g.dispatchLocked()
	g.cond.Broadcast()
	g.mu.Unlock()
}

// GateStats is what the handshake gate has done.
type GateStats struct {
	// Limit is the bound now; InFlight the connections holding a place.
	Limit    int
	InFlight int
	// Waited counts connections that found the bound reached; Samples
	// the completed handshakes measured; Unidentified those that had a
	// place and ended without the remote's identity (failed, stalled,
	// given up by the dialer); Least the least sample of the last minute.
	Waited, Samples, Unidentified int64
	Least                         time.Duration
	// Sched is the last reading of the goroutines' scheduling latency
	// (90th percentile) the bound follows; IdleGrew counts the readings
	// above the target that did not shrink it, the machine's cores idle.
	Sched    time.Duration
	IdleGrew int64
	// The members' lane (lane.go): connections holding one of its places,
	// those that found them taken, and strangers' connections closed after
	// their handshake.
	LaneInFlight            int
	LaneWaited, LaneRefused int64
	// The waiting room: connections in it now, the most at once, its
	// capacity now, the times the accept loop found it full (the
	// connections behind then waited in the kernel's accept queue), the
	// handshakes served per second it follows, and connections that
	// gave up waiting (the upgrader's accept timeout).
	Room, RoomPeak, RoomCap int
	RoomFull, TimedOut      int64
	Rate                    float64
	// Pending: the main port's inbound connections not yet identified
	// (what they hold of the resource manager's transient bound).
	Pending int
}

func (g *handshakeGate) stats() GateStats {
	g.mu.Lock()
	defer g.mu.Unlock()
	st := GateStats{Limit: int(g.limit), InFlight: g.inFlight, Waited: g.waited, Samples: g.samples, Unidentified: g.unidentified, Least: g.baseLocked(), Sched: g.schedP90, IdleGrew: g.idleGrew,
		LaneInFlight: g.laneInFlight, LaneWaited: g.laneWaited,
		Room: g.roomLocked(time.Now()), RoomPeak: g.roomPeak, RoomCap: g.roomCapLocked(), RoomFull: g.roomFull, TimedOut: g.timedOut, Rate: math.Round(g.rate), Pending: g.pending}
	if g.lane != nil {
		g.lane.mu.Lock()
		st.LaneRefused = g.lane.refused
		g.lane.mu.Unlock()
	}
	return st
}

// gatedScope is an inbound TCP connection's scope: it counts the resource
// manager's refusals of its peer and, on the members' lane, holds the
// lane's place until the remote's identity is known or it ends.
type gatedScope struct {
	network.ConnManagementScope
	gate *handshakeGate
	lane *place
	// pending: counted in the gate's pending until identified or done
	// (unpended once).
	pending  bool
	unpended atomic.Bool
}

func (p *gatedScope) SetPeer(id peer.ID) error {
	err := p.ConnManagementScope.SetPeer(id)
	if err != nil {
		p.gate.ends.refusedPeers.Add(1)
	}
	if p.lane != nil {
		p.lane.end(err == nil)
	}
	p.unpend()
	return err
}

func (p *gatedScope) Done() {
	if p.lane != nil {
		p.lane.end(false)
	}
	p.unpend()
	p.ConnManagementScope.Done()
}

func (p *gatedScope) unpend() {
	if p.pending && p.unpended.CompareAndSwap(false, true) {
		p.gate.unpend()
	}
}
