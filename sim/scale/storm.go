package scale

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator"
)

// StormResult is the first registration of N fresh peers.
type StormResult struct {
	Peers int `json:"peers"`
	// Registered and Online are the coordinator's counts once every peer
	// has been welcomed.
	Registered int `json:"registered"`
	Online     int `json:"online"`
	// Seconds is from the first peer's start to the last peer's first
	// welcome; PeersPerSecond is Peers over it.
	Seconds        float64 `json:"seconds"`
	PeersPerSecond float64 `json:"peers_per_second"`
	// Latency is each peer's time from its start to its first welcome
	// (hello → enrollment → welcome, retries and backoff included).
	Latency Latency `json:"registration_latency"`
	Memory  Memory  `json:"memory"`
	// CPUPerPeerMs is this process's CPU from the start to the last first
	// welcome, per peer: coordinator and fleet, or the coordinator's alone
	// with fleet processes (as Memory.Ends); FleetCPUPerPeerMs is the
	// fleet processes' in the same time (0 without them).
	CPUPerPeerMs      float64 `json:"cpu_per_peer_ms"`
	FleetCPUPerPeerMs float64 `json:"fleet_cpu_per_peer_ms,omitempty"`
	// CoordinatorRetries are hellos the coordinator told to retry (its
	// connection rate); Fleet has the peers' own counts.
	CoordinatorRetries int64       `json:"coordinator_retries"`
	Fleet              FleetTotals `json:"fleet"`
}

// Storm builds the fleet, starts its peers at the configured rate, and
// measures until every one has been welcomed and is online. It runs once.
func (e *Engine) Storm(ctx context.Context) (*StormResult, error) {
	if e.fleet != nil {
		return nil, errors.New("the storm has run already")
	}
	n := e.cfg.peers()
	none := sampleMem()
	idleHost := func(idle memSample) int64 { return idle.heap + idle.stack - none.heap - none.stack }
	if len(e.plan.Parts) == 0 {
		f, err := NewFleet(FleetConfig{Key: e.key, Peers: n, Transport: e.cfg.transport()})
		if err != nil {
			return nil, err
		}
		e.fleet = f
	} else {
		// The hosts are built in the fleet processes: none of it here.
		wctx, cancel := e.wait(ctx)
		f, err := startProcFleet(wctx, procFleetConfig{Command: e.cfg.FleetCommand, Key: e.key, Parts: e.plan.Parts})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("starting the fleet processes: %w", err)
		}
		e.fleet = f
		idleHost = func(memSample) int64 { return f.IdleBytes() }
		// This process is now the coordinator's, and collects as
		// `coordinator run` does (its memory per peer depends on it); Close
		// puts the old target back.
		e.gcPercent = debug.SetGCPercent(coordinator.GCPercent)
		if os.Getenv("GOGC") != "" {
			debug.SetGCPercent(e.gcPercent)
		}
	}
	f := e.fleet
	idle := sampleMem()
	wctx, cancel := e.wait(ctx)
	defer cancel()
	cpu0 := cpuTime()
	f.Start(e.cfg.Rate)
	took, err := f.Wait(wctx)
	if err != nil {
		return nil, err
	}
	cpu := cpuTime() - cpu0
	if err := e.Site.WaitOnline(wctx, n); err != nil {
		return nil, err
	}
	// And each peer's first statistics in (the daemon sends them right
	// after its welcome): the coordinator's memory holds them then.
	if err := poll(wctx, func() bool { return f.Totals().Reported >= int64(n) }, func() string {
		return fmt.Sprintf("%d of %d peers sent their first statistics", f.Totals().Reported, n)
	}); err != nil {
		return nil, err
	}
	online := sampleMem()
	registered, on := e.Site.Coord.Service().PeerCounts()
	mem := memoryPerPeer(none, idle, online, n)
	mem.IdleHost = float64(idleHost(idle)) / float64(n)
	mem.Ends = "both"
	if len(e.plan.Parts) > 0 {
		mem.Ends = "coordinator"
	}
	r := &StormResult{Peers: n, Registered: registered, Online: on, Seconds: took.Seconds(),
		PeersPerSecond: float64(n) / took.Seconds(), Latency: latencyOf(f.Latencies()),
		Memory: mem, CPUPerPeerMs: ms(cpu) / float64(n), CoordinatorRetries: e.Site.Coord.Service().PeerRetries(), Fleet: f.Totals()}
	if pf, ok := f.(*procFleet); ok {
		r.FleetCPUPerPeerMs = ms(pf.StormCPU()) / float64(n)
	}
	if err := f.failure(); err != nil {
		return nil, err
	}
	e.storm = r
	return r, nil
}

// ReconnectResult is every online peer coming back after a coordinator
// restart.
type ReconnectResult struct {
	Peers int `json:"peers"`
	// Seconds is from the coordinator's stop until every peer is online
	// again; RestartSeconds until it serves again.
	Seconds        float64 `json:"seconds"`
	RestartSeconds float64 `json:"restart_seconds"`
	// RatioToFirst is Seconds over the storm's (first registration) time;
	// RatioToRate, with a connection-rate R, Seconds over the least time
	// the rate allows (N ÷ R), as the peer benchmarks' storm-ratio (docs/performance.md).
	RatioToFirst float64 `json:"ratio_to_first_registration"`
	RatioToRate  float64 `json:"ratio_to_connection_rate,omitempty"`
	// CoordinatorRetries are hellos the restarted coordinator told to
	// retry; Fleet counts the peers' attempts during the reconnection.
	CoordinatorRetries int64       `json:"coordinator_retries"`
	Fleet              FleetTotals `json:"fleet"`
}

// Reconnect stops the coordinator with every peer online, starts it again
// on the same ports, and waits for every peer to be online again. The
// peers notice the loss and come back with the daemon's backoff.
func (e *Engine) Reconnect(ctx context.Context) (*ReconnectResult, error) {
	if e.storm == nil || e.fleetDone {
		return nil, errors.New("reconnect needs the storm's peers online")
	}
	n := e.cfg.peers()
	wctx, cancel := e.wait(ctx)
	defer cancel()
	if err := e.Site.WaitOnline(wctx, n); err != nil {
		return nil, err
	}
	before := e.fleet.Totals()
	start := time.Now()
	if err := e.Site.Stop(); err != nil {
		return nil, err
	}
	if err := e.Site.Start(); err != nil {
		return nil, err
	}
	restart := time.Since(start)
	if err := e.Site.WaitOnline(wctx, n); err != nil {
		return nil, fmt.Errorf("after the restart: %w", err)
	}
	took := time.Since(start)
	// The coordinator counts a peer online before its welcome arrives.
	if err := poll(wctx, func() bool { return e.fleet.Totals().Welcomes-before.Welcomes >= int64(n) }, func() string {
		return fmt.Sprintf("%d of %d welcomes", e.fleet.Totals().Welcomes-before.Welcomes, n)
	}); err != nil {
		return nil, err
	}
	after := e.fleet.Totals()
	r := &ReconnectResult{Peers: n, Seconds: took.Seconds(), RestartSeconds: restart.Seconds(),
		RatioToFirst: took.Seconds() / e.storm.Seconds, CoordinatorRetries: e.Site.Coord.Service().PeerRetries(),
		Fleet: after.since(before)}
	if rate := e.cfg.ConnectionRate; rate > 0 {
		r.RatioToRate = took.Seconds() / (float64(n) / float64(rate))
	}
	return r, nil
}

// since is t less the counts of before (the sample stays t's).
func (t FleetTotals) since(before FleetTotals) FleetTotals {
	t.Welcomed -= before.Welcomed
	t.Welcomes -= before.Welcomes
	t.Retries -= before.Retries
	t.Refusals -= before.Refusals
	t.Failures -= before.Failures
	t.Down -= before.Down
	t.GaveUp -= before.GaveUp
	t.Reported -= before.Reported
	t.Updates -= before.Updates
	if len(before.FailureReasons) > 0 {
		reasons := map[string]int64{}
		for k, v := range t.FailureReasons {
			if v -= before.FailureReasons[k]; v > 0 {
				reasons[k] = v
			}
		}
		t.FailureReasons = reasons
	}
	return t
}
