package relay_test

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/relay"
)

// What one relayed session carries in the capacity benchmark: a remote
// screen, peer to console, at the rate the issue asks for (the figure
// RustDesk's relay is quoted at, about 1,000 such sessions per core).
const (
	sessionRate   = 200_000 // bytes per second, peer to console
	sessionFrames = 30      // writes per second (a screen's frame rate)
	// rustdeskPerCore is the anchor the result is compared with.
	rustdeskPerCore = 1000
	// A session below this share of sessionRate means the relay (or the
	// machine) could not keep up, and sessions/core is then no capacity.
	deliveredFloor = 0.95
)

// screenProto is the session the benchmark's peers serve: they write
// sessionRate bytes a second, paced, until the stream ends.
const screenProto protocol.ID = "/jumpmesh-test/screen"

// BenchmarkRelaySessionsPerCore measures how many relayed sessions of
// 200 kB/s a relay carries per core of CPU, on the two paths a relayed
// session's bytes can take, in the same run: the circuit and the relay's
// splice. The relay runs in its own child process; this process is the
// load: console-like and as many peer-like libp2p hosts, each its own TCP
// connection to the relay (TLS, yamux), each pair one circuit through the
// relay's ACL, with the session's end-to-end TLS and yamux inside it.
// Every session is one stream on which the peer sends a screen to the
// console: 200 kB/s in one direction, 30 writes a second (what is owed
// since the last tick, so a late tick does not lower the rate, up to 4
// frames: older ones are dropped), ticks spread evenly over the sessions.
// Every session also holds a bulk connection through the relay's splice
// (relay/splice.go), set up as the product does for a relayed forward
// (mesh/channel/bulkrelay.go): the peer asks the relay for a slot over its
// own libp2p connection, both ends open TCP connections to the splice
// listener, and run the bulk hello and AES-128-GCM frames through it (the
// relay copies ciphertext with splice(2)). Each iteration measures one
// window on each path (circuit first): the peers write their screens on
// the circuit's stream, then on the bulk connection; the other path stays
// open and idle, as it would in the product (a session's channel stays in
// the circuit while its bytes go through the splice).
//
// The benchmark runs on machines slower and busier than the one it was
// written on, so it measures what it got rather than time out: the
// sessions are set up a few at a time (capacitySetupWorkers), idle, each
// step with its own deadline and a few attempts; a session that could not
// be set up is counted and logged, not fatal, and the figures are for the
// sessions held. The peers start sending once all are set up, and each
// window starts once every held session has delivered a frame on its path
// (an event, not a fixed warm-up).
//
// In each window of capacityWindow the relay's CPU time (user + system
// from /proc/<pid>/stat) over the window's wall time gives its cores in
// use, and sessions/core = sessions held ÷ cores. Nothing is subtracted:
// the relay's own idle work (GC, identify, the metrics endpoint, the idle
// path's connections) counts against it. relay-cpu-us/session-s is the
// same figure upside down (relay CPU per second of one session),
// relay-syscalls/frame the relay's read and write system calls
// (/proc/<pid>/io: splice(2) is not counted there, so the splice path has
// none) per frame relayed, relay-switches/frame its threads' context
// switches per frame (each thread that sleeps is woken again: the
// wake-ups a frame costs; frames that gather share one);
// splice-reads/wakeup and splice-wakeups/frame are the splice loops'
// (their metrics): the frames one wake-up serves. The load shares
// the machine with the relay;
// load-cpu-% says how much it took (in the circuit the load does four TLS
// and yamux layers per byte to the relay's two, so it needs more CPU than
// the relay; through the splice one AES-GCM pass per end). per-session-kB/s
// is the mean delivered rate and min-session-kB/s the slowest session;
// sessions-at-rate counts those that got at least 95 % of 200 kB/s in
// every window of the path. Fewer than all means the relay is saturated
// (or starved of CPU by the load): that is logged with the load average,
// and sessions/core is then no capacity; full-rate-sessions/core, the
// bytes delivered in sessions of 200 kB/s per relay core, then says what
// the relay's CPU carried (its writes were fewer and larger than at the
// full rate, so it is an estimate). relay-KiB/session is the relay's whole
// heap and stacks in use after the windows, divided by the sessions (a
// circuit and a splice each).
//
// The circuit's figures keep their names; the splice's are prefixed
// splice-, and splice/circuit is the ratio of their full-rate sessions/core
// (a starved load writes fewer, larger frames on the path that costs it
// more, the circuit, which flatters that path's sessions/core). The goal
// (issue 17: 2,000 sessions per relay core) is read as relay CPU per second
// of a full-rate session through the splice (the relay's CPU per byte
// delivered, times 200 kB/s), which does not depend on how much CPU the
// load got: splice-relay-cpu-us/full-rate-session-s, and goal-ratio =
// 500 µs ÷ that, met at ≥ 1. The last line logged says met or not met, and
// that it is an estimate when the load could not send every session at
// its rate (starved senders write fewer, larger frames, which flatters
// the relay).
//
// JUMPMESH_RELAY_BENCH_SESSIONS sets the number of sessions (default
// capacitySessions).
func BenchmarkRelaySessionsPerCore(b *testing.B) {
	n := capacitySessions
	if v, err := strconv.Atoi(os.Getenv(benchSessionsEnv)); err == nil && v > 0 {
		n = v
	}
	set := startSessions(b, n)
	held := len(set.sessions)

	var sums [numPaths]pathSums
	for p := range sums {
		sums[p] = newPathSums(held)
	}
	var idleCores float64
	for b.Loop() {
		for p := range numPaths {
			set.use(b, p)
			sums[p].add(b, measureWindow(b, set, p, sums[p].atRate), p)
		}
		idleCores += set.idleWindow(b)
	}
	mem := set.child.sample(b) // after the windows: it collects garbage twice
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(held), "sessions")
	var perCore, fullRate [numPaths]float64
	for p := range numPaths {
		perCore[p], fullRate[p] = sums[p].report(b, p, held)
	}
	// By full-rate sessions: a starved load writes fewer, larger frames on
	// the path that costs it more (the circuit), which flatters that path's
	// sessions/core.
	b.ReportMetric(fullRate[pathSplice]/fullRate[pathCircuit], "splice/circuit")
	b.ReportMetric(perCore[pathCircuit]/rustdeskPerCore, "vs-rustdesk")
	b.ReportMetric(perCore[pathSplice]/rustdeskPerCore, "splice-vs-rustdesk")
	// The goal figure: relay CPU per second of a full-rate session through
	// the splice (the CPU per byte delivered, at 200 kB/s).
	spliceUS := 1e6 / fullRate[pathSplice]
	b.ReportMetric(spliceUS, "splice-relay-cpu-us/full-rate-session-s")
	b.ReportMetric(goalRelayCPUPerSessionS/spliceUS, "goal-ratio")
	b.ReportMetric(float64(mem.HeapInuse+mem.StackInuse)/float64(held)/1024, "relay-KiB/session")
	// What the relay spends with every session open and none sending
	// (keepalives, GC, timers): part of every path's figure.
	idleUS := 1e6 * idleCores / float64(sums[pathSplice].windows) / float64(held)
	b.ReportMetric(idleUS, "idle-relay-cpu-us/session-s")
	verdict := "NOT MET"
	if spliceUS <= goalRelayCPUPerSessionS {
		verdict = "met"
	}
	if at := countTrue(sums[pathSplice].atRate); at < held {
		// Starved senders write fewer, larger frames than the full rate's,
		// which flatters the relay: the verdict is an estimate.
		verdict += fmt.Sprintf(" by the estimate only (%d of %d sessions at rate: the load could not send at the full rate)", at, held)
	}
	b.Logf("%d of %d sessions held; circuit %.0f sessions/core (%.0f full-rate), splice %.0f (%.0f full-rate): splice ÷ circuit %.2f by full-rate sessions; "+
		"goal ≥ %d full-rate sessions/core (≤ %.0f relay-CPU-µs per session-s) through the splice: %.0f µs, goal-ratio %.2f, %s; load average %s",
		held, n, perCore[pathCircuit], fullRate[pathCircuit], perCore[pathSplice], fullRate[pathSplice], fullRate[pathSplice]/fullRate[pathCircuit],
		goalPerCore, goalRelayCPUPerSessionS, spliceUS, goalRelayCPUPerSessionS/spliceUS, verdict, loadAverage())
	b.Logf("idle (every session open, none sending): %.0f relay-CPU-µs per session-s", idleUS)
}

// The goal of issue 17 for the relay: 2,000 sessions of 200 kB/s per
// core, that is at most 500 µs of relay CPU per second of one session.
const (
	goalPerCore             = 2000
	goalRelayCPUPerSessionS = 1e6 / goalPerCore
)

// The paths a session's bytes take through the relay.
const (
	pathCircuit = iota // the circuit's stream
	pathSplice         // the bulk connection through the relay's splice
	numPaths
	pathNone = -1 // the peers write nothing: the idle window
)

var pathNames = [numPaths]string{"circuit", "splice"}

// prefix is a path's metric name prefix: none for the circuit, whose
// figures kept their names when the splice came.
func prefix(p int) string {
	if p == pathCircuit {
		return ""
	}
	return pathNames[p] + "-"
}

// pathSums adds up one path's windows.
type pathSums struct {
	cores, loadCores, mean, syscalls, switches, frames, slowest float64
	wakeups, reads                                              float64
	windows                                                     int
	atRate                                                      []bool
}

func newPathSums(held int) pathSums {
	s := pathSums{slowest: sessionRate, atRate: make([]bool, held)}
	for i := range s.atRate {
		s.atRate[i] = true
	}
	return s
}

func (s *pathSums) add(b *testing.B, w capacityWindowResult, p int) {
	s.cores += w.relayCores
	s.loadCores += w.loadCores
	s.mean += w.meanRate
	s.syscalls += w.relaySyscalls
	s.switches += w.relaySwitches
	s.frames += w.frames
	s.wakeups += w.loopWakeups
	s.reads += w.loopReads
	s.slowest = min(s.slowest, w.minRate)
	s.windows++
	if w.minRate < deliveredFloor*sessionRate {
		b.Logf("SATURATED (%s): the slowest session got %.0f kB/s of %.0f kB/s (relay %.0f %% of a core, load %.0f %%, load average %s): "+
			"sessions/core is not a capacity", pathNames[p], w.minRate/1e3, sessionRate/1e3, 100*w.relayCores, 100*w.loadCores, loadAverage())
	}
}

// report reports path p's metrics and returns its sessions/core and
// full-rate sessions/core.
func (s *pathSums) report(b *testing.B, p, held int) (perCore, fullRate float64) {
	cores := s.cores / float64(s.windows)
	mean := s.mean / float64(s.windows)
	perCore = float64(held) / cores
	// What the relay's CPU carried, in sessions of the full rate: the
	// figure to read when the load could not send at the full rate.
	fullRate = perCore * mean / sessionRate
	pre := prefix(p)
	b.ReportMetric(float64(countTrue(s.atRate)), pre+"sessions-at-rate")
	b.ReportMetric(perCore, pre+"sessions/core")
	b.ReportMetric(fullRate, pre+"full-rate-sessions/core")
	b.ReportMetric(1e6*cores/float64(held), pre+"relay-cpu-us/session-s")
	if p == pathCircuit {
		b.ReportMetric(s.syscalls/s.frames, "relay-syscalls/frame")
	}
	b.ReportMetric(s.switches/s.frames, pre+"relay-switches/frame")
	if p == pathSplice && s.wakeups > 0 {
		b.ReportMetric(s.reads/s.wakeups, "splice-reads/wakeup")
		b.ReportMetric(s.wakeups/s.frames, "splice-wakeups/frame")
	}
	b.ReportMetric(100*cores, pre+"relay-cpu-%")
	b.ReportMetric(100*s.loadCores/float64(s.windows), pre+"load-cpu-%")
	b.ReportMetric(mean/1e3, pre+"per-session-kB/s")
	b.ReportMetric(s.slowest/1e3, pre+"min-session-kB/s")
	b.Logf("%s: %d of %d sessions at rate; relay %.0f %% of a core: %.0f sessions/core (%.0f full-rate), %.2f thread switches per frame; load %.0f %% of a core",
		pathNames[p], countTrue(s.atRate), held, 100*cores, perCore, fullRate, s.switches/s.frames, 100*s.loadCores/float64(s.windows))
	if p == pathSplice && s.wakeups > 0 {
		b.Logf("splice loops: %.1f reads per wake-up, %.3f wake-ups per frame", s.reads/s.wakeups, s.wakeups/s.frames)
	}
	return perCore, fullRate
}

// benchSessionsEnv sets BenchmarkRelaySessionsPerCore's number of sessions.
const benchSessionsEnv = "JUMPMESH_RELAY_BENCH_SESSIONS"

// sessionSet is what startSessions set up: the relay and, per session held,
// the bytes its console has received so far on each path; path is where
// the peers write.
type sessionSet struct {
	child    *benchChild
	sessions []*session
	path     *atomic.Int32
}

type session struct {
	received [numPaths]atomic.Int64
	ended    atomic.Bool // the console's stream or bulk connection failed or ended
}

// use makes the peers write on path p and waits until every session has
// delivered bytes on it.
func (set *sessionSet) use(b *testing.B, p int) {
	marks := make([]int64, len(set.sessions))
	for i, s := range set.sessions {
		marks[i] = s.received[p].Load()
	}
	set.path.Store(int32(p))
	coordinatortest.Eventually(b, capacityStepTimeout, "a frame on every session's "+pathNames[p], func() bool {
		for i, s := range set.sessions {
			if s.received[p].Load() == marks[i] && !s.ended.Load() {
				return false
			}
		}
		return true
	})
}

// idleWindow makes the peers write nothing and returns the relay's cores
// in use over capacityWindow, once what was in flight has arrived (1 s).
func (set *sessionSet) idleWindow(b *testing.B) float64 {
	set.path.Store(pathNone)
	drain := time.NewTimer(time.Second)
	<-drain.C
	relay0, start := set.child.cpu(b), time.Now()
	window := time.NewTimer(capacityWindow)
	<-window.C
	return (set.child.cpu(b) - relay0).Seconds() / time.Since(start).Seconds()
}

// peerSide is what a peer's screen sender writes to: the circuit's stream
// (its handler) or the bulk connection through the splice (set up after).
type peerSide struct {
	bulk atomic.Pointer[channel.BulkConn]
}

// startSessions starts a relay child and up to n sessions through it, each
// a screen stream in its circuit and a bulk connection through the relay's
// splice. Sessions are set up capacitySetupWorkers at a time, each step
// bounded by capacityStepTimeout, capacitySetupAttempts tries each; one
// that still fails is logged and left out (the benchmark fails only if
// none is held). Once all are set up, every peer starts sending on the
// circuit, until the benchmark ends; startSessions returns when every held
// session has delivered bytes to its console.
func startSessions(b *testing.B, n int) *sessionSet {
	setupStart := time.Now()
	site := coordinatortest.New(b, console.Login)
	peers := make([]host.Host, n)
	consoles := make([]host.Host, n)
	// Members first: the relay's first ACL then has them all.
	names := make([]string, 0, 2*n)
	for i := range n {
		names = append(names, fmt.Sprintf("peer-%d", i), fmt.Sprintf("console-%d", i))
	}
	parallel(b, len(names), func(i int) error { return enroll(site, names[i]) })
	for i := range n {
		peers[i], consoles[i] = memberHost(b, site, names[2*i]), memberHost(b, site, names[2*i+1])
	}
	cfg := relayConfig(b, site, "relay-capacity")
	// No ACL refresh during the windows: a fetch of a thousand members
	// every 100 ms (the tests' period) would be most of an idle relay's work.
	cfg.Refresh = time.Hour
	// Room for every session, whatever n.
	cfg.Resources.MaxCircuits = max(n+n/8, relay.DefaultResources().MaxCircuits)
	cfg.Resources.MaxConnections = max(4*n, relay.DefaultResources().MaxConnections)
	child := startBenchChild(b, cfg)
	ri := relayInfo(b, child.addrs(b))
	relayIP, err := manet.ToIP(ri.Addrs[0])
	if err != nil {
		b.Fatal(err)
	}

	// The senders run until the benchmark ends, however long the set-up
	// took (not under the site's 30 s context).
	ctx, stop := context.WithCancel(context.Background())
	var streams sync.WaitGroup
	sides := make([]*peerSide, n)
	b.Cleanup(func() {
		stop()
		for _, side := range sides {
			if bulk := side.bulk.Load(); bulk != nil {
				_ = bulk.Close() // its console's receiver ends
			}
		}
		streams.Wait()
	})
	path := new(atomic.Int32)
	// The peers send once every session is set up: sessions already
	// sending would starve the handshakes of those still being set up.
	begin := make(chan struct{})
	for i, p := range peers {
		// Spread the sessions' ticks over one frame interval.
		phase := time.Duration(i) * time.Second / sessionFrames / time.Duration(n)
		side := &peerSide{}
		sides[i] = side
		p.SetStreamHandler(screenProto, func(s network.Stream) {
			streams.Go(func() {
				defer s.Reset()
				select {
				case <-begin:
				case <-ctx.Done():
					return
				}
				// A stream whose session's set-up failed was reset by its
				// console: the first write on it fails.
				bulk := side.bulk.Load()
				if bulk == nil {
					return
				}
				sendScreen(ctx, func() io.Writer {
					switch path.Load() {
					case pathSplice:
						return bulk
					case pathNone:
						return nil
					}
					return s
				}, phase)
			})
		})
	}
	all := make([]*session, n)
	var failed atomic.Int64
	var firstErr sync.Once
	paced(capacitySetupWorkers, n, func(i int) {
		var err error
		for range capacitySetupAttempts {
			err = setUpSession(ctx, peers[i], consoles[i], ri, relayIP, sides[i], func(s network.Stream, bulk *channel.BulkConn) {
				all[i] = &session{}
				streams.Go(func() { receiveScreen(s, s.Reset, &all[i].received[pathCircuit], &all[i].ended) })
				streams.Go(func() { receiveScreen(bulk, bulk.Close, &all[i].received[pathSplice], &all[i].ended) })
			})
			if err == nil {
				return
			}
		}
		failed.Add(1)
		firstErr.Do(func() { b.Logf("session %d: %v (load average %s)", i, err, loadAverage()) })
	})
	close(begin)
	set := &sessionSet{child: child, path: path}
	for _, s := range all {
		if s != nil {
			set.sessions = append(set.sessions, s)
		}
	}
	held := len(set.sessions)
	if held == 0 {
		b.Fatalf("none of %d sessions could be set up (load average %s)", n, loadAverage())
	}
	waitCircuits(b, child, held)
	coordinatortest.Eventually(b, capacityStepTimeout, "a frame on every session", func() bool {
		return !slices.ContainsFunc(set.sessions, func(s *session) bool { return s.received[pathCircuit].Load() == 0 })
	})
	b.Logf("set up %d of %d sessions in %s (%d failed; load average %s)",
		held, n, time.Since(setupStart).Round(time.Second), failed.Load(), loadAverage())
	return set
}

// setUpSession reserves a slot for p, connects c to it through the relay,
// opens the screen stream and the bulk connection through the relay's
// splice at relayIP, each step within capacityStepTimeout, and hands the
// console's ends to got.
func setUpSession(ctx context.Context, p, c host.Host, ri peer.AddrInfo, relayIP net.IP, side *peerSide, got func(network.Stream, *channel.BulkConn)) error {
	step := func(what string, fn func(ctx context.Context) error) error {
		ctx, cancel := context.WithTimeout(ctx, capacityStepTimeout)
		defer cancel()
		if err := fn(ctx); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	if err := step("reserving", func(ctx context.Context) error { return reserve(ctx, p, ri) }); err != nil {
		return err
	}
	if err := step("connecting through the relay", func(ctx context.Context) error { return dialCircuit(ctx, c, ri, p.ID()) }); err != nil {
		return err
	}
	var s network.Stream
	if err := step("opening the session", func(ctx context.Context) error {
		var err error
		s, err = c.NewStream(ctx, p.ID(), screenProto)
		return err
	}); err != nil {
		return err
	}
	var bulk *channel.BulkConn
	if err := step("splicing its bulk connection", func(ctx context.Context) error {
		var peerEnd *channel.BulkConn
		var err error
		peerEnd, bulk, err = spliceBulk(ctx, p, ri.ID, relayIP)
		if err == nil {
			side.bulk.Store(peerEnd)
		}
		return err
	}); err != nil {
		_ = s.Reset()
		return err
	}
	got(s, bulk)
	return nil
}

// spliceBulk sets up a bulk connection between peer p and its console
// through relay's splice at relayIP, as a relayed forward does: p asks for
// a slot over its libp2p connection to the relay, both ends dial the splice
// listener with the slot, and the console makes the bulk hello with the
// offer p made.
func spliceBulk(ctx context.Context, p host.Host, relay peer.ID, relayIP net.IP) (peerEnd, consoleEnd *channel.BulkConn, err error) {
	st, err := p.NewStream(network.WithNoDial(ctx, "splice slot"), relay, channel.RelayBulkProtocol)
	if err != nil {
		return nil, nil, err
	}
	slot, err := channel.ReadSpliceSlot(st)
	_ = st.Close()
	if err != nil {
		return nil, nil, err
	}
	addr := net.JoinHostPort(relayIP.String(), strconv.Itoa(slot.Port))
	offer := channel.NewBulkOffer()
	offers := &channel.BulkOffers{}
	offers.Add(offer, channel.BulkHandshakeTimeout)
	pc, err := channel.DialSplice(ctx, addr, slot.Token, channel.SpliceOfferer, capacityStepTimeout)
	if err != nil {
		return nil, nil, err
	}
	cc, err := channel.DialSplice(ctx, addr, slot.Token, channel.SpliceDialer, capacityStepTimeout)
	if err != nil {
		_ = pc.Close()
		return nil, nil, err
	}
	type accepted struct {
		c   *channel.BulkConn
		err error
	}
	acc := make(chan accepted, 1)
	go func() {
		c, err := channel.AcceptBulk(pc, offers)
		acc <- accepted{c, err}
	}()
	consoleEnd, err = channel.DialBulk(cc, offer)
	a := <-acc
	switch {
	case err != nil || a.err != nil:
		_ = pc.Close()
		_ = cc.Close()
		return nil, nil, cmp.Or(err, a.err)
	}
	return a.c, consoleEnd, nil
}

// paced runs fn(0..n-1) on workers goroutines.
func paced(workers, n int, fn func(i int)) {
	next := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range next {
				fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// The benchmark's size: sessions and windows that fit `make bench` on a
// 2-core machine (about a minute at -benchtime 1x, most of it set-up).
// Set-up goes capacitySetupWorkers sessions at a time: on a loaded 2-core
// machine 16 at once made single dials outlast their deadline.
const (
	capacitySessions      = 500
	capacitySetupWorkers  = 4
	capacitySetupAttempts = 3
	capacityStepTimeout   = time.Minute
	capacityWindow        = 10 * time.Second
)

type capacityWindowResult struct {
	relayCores, loadCores float64 // CPU seconds per wall second
	meanRate, minRate     float64 // delivered bytes per second per session
	relaySyscalls         float64 // the relay's read and write system calls
	relaySwitches         float64 // its threads' context switches (wake-ups, mostly)
	frames                float64 // frames the sessions sent, sessionFrames a second each
	loopWakeups           float64 // the splice loops' wake-ups that read
	loopReads             float64 // and their reads
}

// measureWindow watches the sessions' path p for capacityWindow and
// clears atRate[i] for a session below deliveredFloor of sessionRate.
func measureWindow(b *testing.B, set *sessionSet, p int, atRate []bool) capacityWindowResult {
	before := make([]int64, len(set.sessions))
	for i, s := range set.sessions {
		before[i] = s.received[p].Load()
	}
	wake0, reads0 := set.child.loopCounts(b)
	relay0, load0, sys0, sw0, start := set.child.cpu(b), selfCPU(b), set.child.syscalls(b), set.child.switches(b), time.Now()
	window := time.NewTimer(capacityWindow)
	<-window.C
	relay1, load1, sys1, sw1, wall := set.child.cpu(b), selfCPU(b), set.child.syscalls(b), set.child.switches(b), time.Since(start)
	wake1, reads1 := set.child.loopCounts(b)
	rates := make([]float64, len(set.sessions))
	var sum float64
	for i, s := range set.sessions {
		rates[i] = float64(s.received[p].Load()-before[i]) / wall.Seconds()
		sum += rates[i]
		if rates[i] < deliveredFloor*sessionRate || s.ended.Load() {
			atRate[i] = false
		}
	}
	return capacityWindowResult{
		relayCores:    (relay1 - relay0).Seconds() / wall.Seconds(),
		loadCores:     (load1 - load0).Seconds() / wall.Seconds(),
		meanRate:      sum / float64(len(rates)),
		minRate:       slices.Min(rates),
		relaySyscalls: float64(sys1 - sys0),
		relaySwitches: float64(sw1 - sw0),
		frames:        float64(len(rates)) * sessionFrames * wall.Seconds(),
		loopWakeups:   wake1 - wake0,
		loopReads:     reads1 - reads0,
	}
}

// loopCounts are the relay's splice loops' wake-ups that read and their
// reads so far.
func (c *benchChild) loopCounts(b *testing.B) (wakeups, reads float64) {
	return metric(b, c.info.HTTP, "jumpmesh_relay_splice_loop_wakeups_total"), metric(b, c.info.HTTP, "jumpmesh_relay_splice_loop_reads_total")
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// sendScreen writes to w() what a sessionRate stream owes at each of
// sessionFrames ticks a second, starting after phase, until ctx ends or
// a write fails; nothing while w() is nil (what is owed then is dropped). A late tick sends what is owed since the last one, up
// to maxOwedFrames frames; older frames are dropped, as a screen sender
// skips frames it could not send, so a relay that cannot keep up shows as
// a delivered rate below sessionRate rather than as a backlog.
func sendScreen(ctx context.Context, w func() io.Writer, phase time.Duration) {
	const maxOwedFrames = 4
	frame := make([]byte, maxOwedFrames*sessionRate/sessionFrames)
	delay := time.NewTimer(phase)
	select {
	case <-ctx.Done():
		delay.Stop()
		return
	case <-delay.C:
	}
	tick := time.NewTicker(time.Second / sessionFrames)
	defer tick.Stop()
	start := time.Now()
	var sent int64
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			// Not the tick's own time: a tick delivered late may carry
			// an earlier time than the previous one.
			due := int64(time.Since(start).Seconds() * sessionRate)
			sent = max(sent, due-int64(len(frame)))
			if due <= sent {
				continue
			}
			if dst := w(); dst != nil {
				if _, err := dst.Write(frame[:due-sent]); err != nil {
					return
				}
			}
			sent = due
		}
	}
}

// receiveScreen counts what arrives on r into received until it ends,
// then calls done and marks the session ended.
func receiveScreen(r io.Reader, done func() error, received *atomic.Int64, ended *atomic.Bool) {
	defer done()
	defer ended.Store(true)
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		received.Add(int64(n))
		if err != nil {
			return
		}
	}
}

// enroll invites a technician and logs it in, which gives it a console
// key. Unlike member, it closes the console's connection to the
// coordinator: hundreds of idle clients would only load this process.
func enroll(site *coordinatortest.Site[*console.Client], name string) error {
	inv, err := site.Admin.InviteUser(site.Ctx(), name, pb.Role_ROLE_TECHNICIAN, time.Hour)
	if err != nil {
		return fmt.Errorf("inviting %s: %w", name, err)
	}
	c, _, err := site.TryLogin(name, inv.GetCode())
	if err != nil {
		return fmt.Errorf("logging %s in: %w", name, err)
	}
	return c.Close()
}

// memberHost is the host of an enrolled member.
func memberHost(b *testing.B, site *coordinatortest.Site[*console.Client], name string) host.Host {
	key, err := mesh.LoadKeyFile(filepath.Join(site.Dir, "consoles", name, console.KeyFile))
	if err != nil {
		b.Fatal(err)
	}
	return newHost(b, key)
}

// parallel runs fn(0..n-1) on a few workers and fails b on the first error.
func parallel(b *testing.B, n int, fn func(i int) error) {
	errs := make(chan error, n)
	paced(8, n, func(i int) {
		if err := fn(i); err != nil {
			errs <- err
		}
	})
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// loadAverage is the machine's 1-minute load average, to tell a relay that
// could not keep up from a machine busy with something else.
func loadAverage() string {
	raw, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	return strings.Fields(string(raw))[0]
}
