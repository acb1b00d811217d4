package coordinator

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// gateTCP is a remote's address, gateLocal the listener's.
var (
	gateTCP   = ma.StringCast("/ip4/127.0.0.1/tcp/4001")
	gateLocal = ma.StringCast("/ip4/127.0.0.1/tcp/7000")
)

// conn is an inbound connection at the gate as the tests drive it: its
// scope (OpenConnection) and, off the members' lane, its place
// (awaitPlace, as its security handshake starts).
type conn struct {
	scope network.ConnManagementScope
	pl    *place
}

// Done: the connection ends unidentified.
func (c conn) Done() {
	if c.pl != nil {
		c.pl.end(false)
	}
	c.scope.Done()
}

// SetPeer: its handshake ended, the remote identified.
func (c conn) SetPeer(id peer.ID) error {
	if c.pl != nil {
		c.pl.end(true)
	}
	return c.scope.SetPeer(id)
}

// open takes a place in g on another goroutine, as libp2p's accept loop
// (OpenConnection) and then the connection's security handshake
// (awaitPlace) do; the channel yields the connection once it has one.
func open(t *testing.T, g *handshakeGate, addr ma.Multiaddr) <-chan conn {
	return arrive(t, g, addr, true)
}

// accept is open without the security handshake: a connection the lane's
// accept loop took waits for a lane's place in OpenConnection; QUIC's
// handshake runs in quic-go.
func accept(t *testing.T, g *handshakeGate, addr ma.Multiaddr) <-chan conn {
	return arrive(t, g, addr, false)
}

func arrive(t *testing.T, g *handshakeGate, addr ma.Multiaddr, handshake bool) <-chan conn {
	t.Helper()
	got := make(chan conn, 1)
	go func() {
		var c conn
		var err error
		if c.scope, err = g.OpenConnection(network.DirInbound, true, addr); err != nil {
			t.Error(err)
		}
		if handshake {
			if c.pl, err = g.awaitPlace(context.Background(), gateLocal); err != nil {
				t.Error(err)
			}
		}
		got <- c
	}()
	return got
}

func waitScope(t *testing.T, ch <-chan conn, what string) conn {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no place within 10 s", what)
		return conn{}
	}
}

func TestHandshakeGateWaitsAtItsBound(t *testing.T) {
	g := newHandshakeGate(&network.NullResourceManager{}, 64, time.Minute)
	limit := g.stats().Limit
	scopes := make([]conn, 0, limit)
	for range limit {
		scopes = append(scopes, waitScope(t, open(t, g, gateTCP), "within the bound"))
	}
	next := open(t, g, gateTCP)
	// Not an inbound TCP connection: never waits.
	waitScope(t, accept(t, g, ma.StringCast("/ip4/127.0.0.1/udp/4001/quic-v1")), "QUIC")
	if s, err := g.OpenConnection(network.DirOutbound, true, gateTCP); err != nil || s == nil {
		t.Fatalf("outbound: %v", err)
	}
	select {
	case <-next:
		t.Fatalf("a connection past the bound of %d got a place", limit)
	case <-time.After(50 * time.Millisecond): // the absence of an event: bounded, not a wait for one
	}
	if st := g.stats(); st.InFlight != limit || st.Waited != 1 {
		t.Fatalf("stats %+v: want %d in flight, 1 waited", st, limit)
	}
	// A failed handshake gives its place back without a sample.
	scopes[0].Done()
	s := waitScope(t, next, "after a place was given back")
	if st := g.stats(); st.Samples != 0 || st.Unidentified != 1 {
		t.Fatalf("a handshake that ended unidentified: %+v, want no sample, 1 unidentified", st)
	}
	// Identified: a sample; Done after it gives nothing back twice.
	if err := s.SetPeer(peer.ID("x")); err != nil {
		t.Fatal(err)
	}
	s.Done()
	if st := g.stats(); st.Samples != 1 || st.InFlight != limit-1 {
		t.Fatalf("stats %+v: want 1 sample, %d in flight", st, limit-1)
	}
}

func TestHandshakeGateHoldIsBounded(t *testing.T) {
	g := newHandshakeGate(&network.NullResourceManager{}, 64, 20*time.Millisecond)
	limit := g.stats().Limit
	for range limit {
		waitScope(t, open(t, g, gateTCP), "within the bound") // never identified, never done
	}
	// Each place comes back after the hold: a stranger's silent
	// connections delay the next one by the hold, no more.
	waitScope(t, open(t, g, gateTCP), "past the hold")
	if st := g.stats(); st.Samples != 0 || st.Limit != limit {
		t.Fatalf("silent connections moved the bound: %+v", st)
	}
}

func TestHandshakeGateCloseLetsWaitersThrough(t *testing.T) {
	g := newHandshakeGate(&network.NullResourceManager{}, 64, time.Minute)
	for range g.stats().Limit {
		waitScope(t, open(t, g, gateTCP), "within the bound")
	}
	next := open(t, g, gateTCP)
	g.close()
	waitScope(t, next, "after close")
}

// The bound grows while the coordinator's goroutines wait little for a
// core, however long handshakes take (a slow or distant peer's share), and
// shrinks when they queue for CPU, within [GOMAXPROCS or 2, MaxHandshakes].
func TestHandshakeGateAdapts(t *testing.T) {
	g := newHandshakeGate(&network.NullResourceManager{}, 256, time.Minute)
	start := g.stats().Limit
	var sched time.Duration
	g.sched = func() (time.Duration, bool) { return sched, true }
	g.cpu = nil // the machine's cores: TestHandshakeGateGrowsOverIdleCores
	now := time.Unix(1_000_000, 0)
	run := func(n int, sample time.Duration) int {
		g.mu.Lock()
		defer g.mu.Unlock()
		for range n {
			g.adapt(sample, now)
			now = now.Add(gateSchedEvery)
		}
		return int(g.limit)
	}
	run(1, 2*time.Millisecond) // the least handshake
	sched = 200 * time.Microsecond
	if grown := run(500, 40*time.Millisecond); grown != 256 { // 20× the least: the remote's time
		t.Fatalf("bound %d after slow handshakes on idle cores, want the maximum 256 (started at %d)", grown, start)
	}
	sched = 20 * time.Millisecond // 10× the target
	if shrunk := run(500, 2*time.Millisecond); shrunk > int(2*g.min) {
		t.Fatalf("bound %d while goroutines wait 20 ms for a core, want near the minimum %v", shrunk, g.min)
	}
	if st := g.stats(); st.Sched != sched {
		t.Fatalf("stats %+v: want the last reading %s", st, sched)
	}
	// Between readings, and when a reading has too few events, the bound
	// stays.
	sched = 200 * time.Microsecond
	g.sched = func() (time.Duration, bool) { return sched, false }
	before := g.stats().Limit
	if held := run(100, 2*time.Millisecond); held != before {
		t.Fatalf("bound moved from %d to %d without a reading", before, held)
	}
}

// The probe reads the runtime's own histogram: goroutines that wait for
// a core show in it.
func TestSchedProbeReadsTheRuntime(t *testing.T) {
	p := newSchedProbe()
	p.p90() // the first reading is the baseline
	done := make(chan struct{})
	for range 256 {
		go func() { <-done }()
	}
	close(done)
	runtime.Gosched()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := p.p90(); ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no reading after 256 goroutines ran")
		}
		for range 64 {
			runtime.Gosched()
		}
	}
}

// A member's request pauses the gate: a place given back while it is
// served goes to no one until it is answered, or its hold passes; past the
// pauses' budget a request pauses nothing.
func TestHandshakeGateLetsMembersFirst(t *testing.T) {
	g := newHandshakeGate(&network.NullResourceManager{}, 64, time.Minute)
	var scopes []conn
	for range g.stats().Limit {
		scopes = append(scopes, waitScope(t, open(t, g, gateTCP), "within the bound"))
	}
	next := open(t, g, gateTCP)
	done := g.prioritize()
	scopes[0].Done()
	select {
	case <-next:
		t.Fatal("a connection got a place while a member's request was served")
	case <-time.After(gatePriorityHold / 4): // the absence of an event: bounded, not a wait for one
	}
	done()
	done() // twice: nothing more
	scopes = append(scopes, waitScope(t, next, "after the request was answered"))
	if g.serving != 0 {
		t.Fatalf("serving %d after the request", g.serving)
	}

	// A request that is never answered pauses the gate for its hold only.
	next = open(t, g, gateTCP)
	g.prioritize()
	scopes[1].Done()
	waitScope(t, next, "past the hold of an unanswered request")

	// Past the budget, nothing is paused.
	g.mu.Lock()
	g.budget, g.budgetAt = -time.Hour, time.Now()
	g.mu.Unlock()
	next = open(t, g, gateTCP)
	defer g.prioritize()()
	scopes[2].Done()
	waitScope(t, next, "with the pauses' budget spent")
}

// The members' lane (lane.go): a connection its accept loop let through
// takes a place of the lane's own, while the bound is reached and a
// member's request pauses the gate; the lane's places are bounded too,
// and a place given back goes to the queue it came from.
func TestHandshakeGateLaneHasPlacesOfItsOwn(t *testing.T) {
	g := newHandshakeGate(&network.NullResourceManager{}, 64, time.Minute)
	g.lane = newMemberLane(nil)
	laneConn := func(port int) ma.Multiaddr {
		remote := ma.StringCast("/ip4/127.0.0.1/tcp/" + strconv.Itoa(port))
		g.lane.mu.Lock()
		g.lane.accepted[string(remote.Bytes())]++ // as laneGater.InterceptAccept
		g.lane.mu.Unlock()
		return remote
	}
	limit := g.stats().Limit
	var main []conn
	for range limit {
		main = append(main, waitScope(t, open(t, g, gateTCP), "within the bound"))
	}
	queued := open(t, g, gateTCP)
	done := g.prioritize() // a member's request is served
	defer done()
	var lane []conn
	for i := range gateLanePlaces {
		lane = append(lane, waitScope(t, accept(t, g, laneConn(5000+i)), "a lane place"))
	}
	third := accept(t, g, laneConn(6000))
	select {
	case <-third:
		t.Fatalf("a connection past the lane's %d places got one", gateLanePlaces)
	case <-queued:
		t.Fatal("a queued connection got a place past the bound")
	case <-time.After(50 * time.Millisecond): // the absence of an event
	}
	st := g.stats()
	if st.InFlight != limit || st.LaneInFlight != gateLanePlaces || st.LaneWaited != 1 || st.Waited != 1 {
		t.Fatalf("stats %+v: want %d in flight, %d on the lane, 1 waiting in each", st, limit, gateLanePlaces)
	}
	lane[0].Done() // a lane place back: the lane's waiter, not the queue's
	waitScope(t, third, "the lane's waiter")
	select {
	case <-queued:
		t.Fatal("a lane place went to the main queue")
	case <-time.After(50 * time.Millisecond):
	}
	done()
	main[0].Done()
	waitScope(t, queued, "the main queue's waiter")
	if st := g.stats(); st.LaneInFlight != gateLanePlaces || st.InFlight != limit {
		t.Fatalf("stats %+v", st)
	}
}

// A scheduling latency above the target shrinks the bound only while the
// machine's cores are busy or the coordinator's own run full: with cores
// idle it was the kernel sharing them with another process's threads
// (the sweep's fleet on 2 cores), and the bound grows, as the idle cores
// ask, up to gateIdlePerCore places per core. Busy cores, or the coordinator's Ps full on a machine with cores
// to spare (a CPU quota), shrink it as before.
func TestHandshakeGateGrowsOverIdleCores(t *testing.T) {
	g := newHandshakeGate(&network.NullResourceManager{}, 256, time.Minute)
	g.sched = func() (time.Duration, bool) { return 20 * time.Millisecond, true } // 10× the target
	var idle, self float64
	g.cpu = func() (float64, float64, bool) { return idle, self, true }
	now := time.Unix(1_000_000, 0)
	run := func(n int) int {
		g.mu.Lock()
		defer g.mu.Unlock()
		for range n {
			g.adapt(2*time.Millisecond, now)
			now = now.Add(gateSchedEvery)
		}
		return int(g.limit)
	}
	idle, self = 0.33, 0.35 // the quiet sweep at 5,000 peers: cores 0.67 busy
	if grown := run(500); grown < int(g.idleMax)-1 || grown > int(g.idleMax) {
		t.Fatalf("bound %d with a third of the cores idle, want idle cores' bound %v", grown, g.idleMax)
	}
	if st := g.stats(); st.IdleGrew == 0 {
		t.Fatalf("stats %+v: the readings over idle cores not counted", st)
	}
	idle = 0.02 // the machine busy (another process's load)
	if shrunk := run(500); shrunk > int(2*g.min) {
		t.Fatalf("bound %d on busy cores, want near the minimum %v", shrunk, g.min)
	}
	idle, self = 0.5, 0.95 // the coordinator's own Ps full, other cores idle
	if held := run(500); held > int(2*g.min) {
		t.Fatalf("bound %d while the coordinator's Ps run full, want near the minimum %v", held, g.min)
	}
}

func TestCPUProbeReadsTheMachine(t *testing.T) {
	p := newCPUProbe()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for start := time.Now(); time.Since(start) < 20*time.Millisecond; { // some CPU of our own
		}
		idle, self, ok := p.read()
		if ok {
			if idle < 0 || idle > 1 || self < 0 || self > 1.5 {
				t.Fatalf("idle %.2f, self %.2f: want shares", idle, self)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("no reading of /proc/stat within 5 s")
		}
	}
}

// The waiting room: libp2p's accept loop takes connections out of the
// kernel's queue while the room has space (gateRoomMin before the gate
// knows its rate) and waits when it is full; a connection whose handshake
// does not start counts in the room for its grace only.
func TestHandshakeGateRoomBoundsTheAcceptLoop(t *testing.T) {
	g := newHandshakeGate(&network.NullResourceManager{}, 1<<16, time.Minute)
	for range gateRoomMin {
		if _, err := g.OpenConnection(network.DirInbound, true, gateTCP); err != nil {
			t.Fatal(err)
		}
	}
	if st := g.stats(); st.Room != gateRoomMin || st.InFlight != 0 {
		t.Fatalf("stats %+v: want the room full (%d), no place taken", st, gateRoomMin)
	}
	start := time.Now()
	next := accept(t, g, gateTCP)
	select {
	case <-next:
		t.Fatal("the accept loop took a connection into a full room")
	case <-time.After(50 * time.Millisecond): // the absence of an event
	}
	// None starts its handshake: after the grace the room has space, with
	// nothing else happening.
	waitScope(t, next, "the room's space after its grace")
	if took := time.Since(start); took < gateRoomGrace/2 {
		t.Fatalf("the room had space after %s, before the grace", took)
	}
	if st := g.stats(); st.RoomFull != 1 {
		t.Fatalf("stats %+v: want 1 wait", st)
	}
	// The others' graces end.
	waitFor(t, "the last connection alone in the room", func() bool { return g.stats().Room == 1 })
	// Its handshake starts: from fresh to a place.
	pl, err := g.awaitPlace(context.Background(), gateLocal)
	if err != nil || pl == nil {
		t.Fatalf("awaitPlace: %v, %v", pl, err)
	}
	if st := g.stats(); st.InFlight != 1 || st.Room != 0 {
		t.Fatalf("stats %+v: want 1 place, the room empty", st)
	}
	pl.end(true)
	if st := g.stats(); st.InFlight != 0 || st.Samples != 1 {
		t.Fatalf("stats %+v: want the place back and a sample", st)
	}
}

// The room's count of connections is within the resource manager's
// transient bound (Resources.MaxHandshakes), less the places: past it the
// manager would refuse the connections the room took.
func TestHandshakeGateRoomWithinTheTransientBound(t *testing.T) {
	g := newHandshakeGate(&network.NullResourceManager{}, 600, time.Minute)
	if st := g.stats(); st.RoomCap != 600-gateTransientSpare {
		t.Fatalf("stats %+v: want a room of %d", st, 600-gateTransientSpare)
	}
	waitScope(t, open(t, g, gateTCP), "a place")
	if st := g.stats(); st.RoomCap != 600-gateTransientSpare-1 {
		t.Fatalf("stats %+v: want a room of %d with a place taken", st, 600-gateTransientSpare-1)
	}
	small := newHandshakeGate(&network.NullResourceManager{}, 8, time.Minute)
	if st := small.stats(); st.RoomCap != 1 {
		t.Fatalf("stats %+v: want at least one in the room", st)
	}
}

// Places go in the order the handshakes asked; one that gives up (the
// upgrader's accept timeout) leaves the queue and the room, and the next
// place goes to the one after it.
func TestHandshakeGateQueueInOrder(t *testing.T) {
	g := newHandshakeGate(&network.NullResourceManager{}, 1<<16, time.Minute)
	limit := g.stats().Limit
	var placed []conn
	for range limit {
		placed = append(placed, waitScope(t, open(t, g, gateTCP), "within the bound"))
	}
	type waiter struct {
		pl  chan *place
		err chan error
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var ws []waiter
	for i := range 3 {
		if _, err := g.OpenConnection(network.DirInbound, true, gateTCP); err != nil {
			t.Fatal(err)
		}
		w := waiter{pl: make(chan *place, 1), err: make(chan error, 1)}
		c := context.Background()
		if i == 0 {
			c = ctx // gives up
		}
		go func() {
			pl, err := g.awaitPlace(c, gateLocal)
			w.pl <- pl
			w.err <- err
		}()
		ws = append(ws, w)
		// Queued in this order.
		waitFor(t, fmt.Sprintf("waiter %d queued", i), func() bool { return g.stats().Waited >= int64(i+1) })
	}
	cancel()
	if pl, err := <-ws[0].pl, <-ws[0].err; err == nil || pl != nil {
		t.Fatalf("a waiter whose context ended: %v, %v", pl, err)
	}
	if st := g.stats(); st.TimedOut != 1 || st.Room != 2 {
		t.Fatalf("stats %+v: want 1 timed out, 2 in the room", st)
	}
	placed[0].Done()
	select {
	case pl := <-ws[1].pl:
		if err := <-ws[1].err; err != nil || pl == nil {
			t.Fatalf("the second waiter: %v, %v", pl, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("the second waiter got no place: %+v", g.stats())
	}
	select {
	case <-ws[2].pl:
		t.Fatal("the third waiter got a place before one came back")
	case <-time.After(50 * time.Millisecond): // the absence of an event
	}
	if st := g.stats(); st.InFlight != limit || st.Room != 1 {
		t.Fatalf("stats %+v: want %d in flight, 1 in the room", st, limit)
	}
	g.close()
	if pl, err := <-ws[2].pl, <-ws[2].err; err != nil || pl != nil {
		t.Fatalf("closing: %v, %v: want through without a place", pl, err)
	}
}

// The room holds what the gate served in gateRoomWait at the rate it
// served while connections queued; seconds without a queue only raise the
// rate.
func TestHandshakeGateRoomFollowsTheRate(t *testing.T) {
	g := newHandshakeGate(&network.NullResourceManager{}, 1<<16, time.Minute)
	now := time.Unix(1_000_000, 0)
	serve := func(perSecond, seconds int, queued int) {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.queued = queued
		for range perSecond * seconds {
			now = now.Add(time.Second / time.Duration(perSecond))
			g.countServed(now)
		}
		g.queued = 0
	}
	serve(100, 5, 0)
	if st := g.stats(); st.Rate < 90 || st.Rate > 110 || st.RoomCap != gateRoomMin {
		t.Fatalf("stats %+v: want ~100/s, the room's minimum", st)
	}
	serve(600, 10, 100)
	if st := g.stats(); st.Rate < 550 || st.Rate > 650 || st.RoomCap < 4400 || st.RoomCap > 5200 {
		t.Fatalf("stats %+v: want ~600/s and a room of ~4,800", st)
	}
	serve(300, 10, 0) // no queue: asked less, not served less
	if st := g.stats(); st.Rate < 550 {
		t.Fatalf("stats %+v: the rate fell without a queue", st)
	}
	serve(300, 10, 100) // served less with a queue
	if st := g.stats(); st.Rate > 350 {
		t.Fatalf("stats %+v: want ~300/s", st)
	}
	serve(20000, 10, 100)
	if st := g.stats(); st.RoomCap != 1<<16-gateTransientSpare {
		t.Fatalf("stats %+v: want the transient bound less the spare", st)
	}
}

// The accept loop also waits while the main port's connections not yet
// identified fill the resource manager's transient bound (less the
// spare), though none counts in the room any more (their negotiation
// not started within the grace: a storm on busy cores): the next waits in
// the kernel's accept queue instead of being refused by the resource
// manager, and is taken as soon as one of them is identified or ends.
func TestHandshakeGateKeepsPendingConnectionsWithinTheTransientBound(t *testing.T) {
	const transient, bound = 4 * gateTransientSpare, 3 * gateTransientSpare
	g := newHandshakeGate(&network.NullResourceManager{}, transient, time.Minute)
	var scopes []network.ConnManagementScope
	for range bound {
		s, err := g.OpenConnection(network.DirInbound, true, gateTCP)
		if err != nil {
			t.Fatal(err)
		}
		scopes = append(scopes, s)
	}
	// Out of the room after the grace; still pending.
	waitFor(t, "the connections out of the room", func() bool { return g.stats().Room == 0 })
	if st := g.stats(); st.Pending != bound {
		t.Fatalf("stats %+v: want %d pending", st, bound)
	}
	next := accept(t, g, gateTCP)
	select {
	case <-next:
		t.Fatal("the accept loop took a connection past the transient bound")
	case <-time.After(50 * time.Millisecond): // the absence of an event
	}
	// One identified: the next is taken.
	if err := scopes[0].SetPeer("12D3KooWGzBpJ4aPDZ4mDCLhqsvUZRJqrT1DzBk7kDaYBhvP6LCn"); err != nil {
		t.Fatal(err)
	}
	n := waitScope(t, next, "a connection after one was identified")
	// One ends (twice counted once: SetPeer, then its close).
	scopes[0].Done()
	scopes[1].Done()
	if st := g.stats(); st.Pending != bound-1 {
		t.Fatalf("stats %+v: want %d pending", st, bound-1)
	}
	n.Done()
	if st := g.stats(); st.Pending != bound-2 {
		t.Fatalf("stats %+v: want %d pending", st, bound-2)
	}
}
