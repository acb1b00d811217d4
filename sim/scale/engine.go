package scale

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	lpeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/jumpoint"
)

// Workload is one measurement the engine runs.
type Workload string

// The workloads, in the order Run runs them.
const (
	// Storm: N fresh peers register at a rate (or all at once).
	Storm Workload = "storm"
	// Settings: with the storm's peers online, the administrator changes
	// a setting every peer keeps; until every peer has read it.
	Settings Workload = "settings"
	// Reconnect: with every peer online, the coordinator restarts on the
	// same ports and every peer comes back.
	Reconnect Workload = "reconnect"
	// Lifecycle: the peers stop; the injected clock moves past the lost
	// and delete horizons and the sweep runs at each.
	Lifecycle Workload = "lifecycle"
	// Search: M peer records are written to the store, and the
	// administrator searches them.
	Search Workload = "search"
)

// Workloads is every workload in Run's order.
var Workloads = []Workload{Storm, Settings, Reconnect, Lifecycle, Search}

// ParseWorkloads reads "all" or a comma-separated list of workload names.
func ParseWorkloads(s string) ([]Workload, error) {
	if s == "" || s == "all" {
		return Workloads, nil
	}
	var out []Workload
	for _, name := range strings.Split(s, ",") {
		w := Workload(strings.TrimSpace(name))
		if !slices.Contains(Workloads, w) {
			return nil, fmt.Errorf("unknown workload %q: want all or some of storm, reconnect, lifecycle, search", name)
		}
		out = append(out, w)
	}
	return out, nil
}

// Config is one engine run. Zero values are defaults.
type Config struct {
	// Dir holds the site (coordinator data, admin console). Default: a
	// temporary directory that Close removes.
	Dir string
	// Peers is the fleet's size (default 100).
	Peers int
	// Rate is how many peers the storm starts per second; 0 starts them
	// all at once.
	Rate float64
	// ConnectionRate is the site's connection-rate (1–300/s); 0 lifts the
	// coordinator's admission, so that the storm measures the coordinator.
	ConnectionRate int
	// Transport is how peers reach the coordinator: "tcp" (default, as
	// the daemon when the key offers TCP), "quic" or "all".
	Transport string
	// Jumpoint puts the fleet behind a jumpoint (the real daemon, in this
	// process, on loopback): every peer registers through a tunnel, as
	// peers installed with a key naming it do. Transport is then TCP.
	Jumpoint bool
	// StoredPeers is how many peer records the search workload writes to
	// the store (default 10,000).
	StoredPeers int
	// SearchRuns is how many times each query runs (default 20).
	SearchRuns int
	// ConsoleBinary is a jumpmesh binary: the search workload then also
	// runs each query as `jumpmesh ls` (and `ls --json`) in a process of
	// its own, as a technician does, timing the whole command (see
	// SearchResult). Empty: only in this process.
	ConsoleBinary string
	// Fleets is how many child processes run the storm's peers: 0 chooses
	// (this process while they fit its open-file limit, else as few
	// children as hold them), InProcess keeps them here. With the fleet in
	// children the engine's process holds the coordinator's ends alone,
	// and Memory is the coordinator's (fleetplan.go).
	Fleets int
	// QUICPeers, with fleet processes, is how many of the peers come over
	// QUIC, in fleet processes of their own; 0 puts there those this
	// process's open-file limit cannot hold over TCP, NoQUIC none.
	QUICPeers int
	// FleetCommand starts one fleet process (argv): a process serving
	// ServeFleetProcess when FleetChildEnv is set (`jumpmesh sim fleet`).
	// Without it the fleet stays in this process.
	FleetCommand []string
	// Timeout bounds each wait for peers (default 1 min + 20 ms per peer).
	Timeout time.Duration
	Logger  *slog.Logger
	// Progress, when set, is told as each workload begins; FleetNote,
	// before the first, where the fleet runs and why, when not simply in
	// this process.
	Progress  func(Workload)
	FleetNote func(string)
}

func (c Config) peers() int { return cmp.Or(c.Peers, 100) }

func (c Config) transport() string {
	switch c.Transport {
	case "", "tcp":
		return "tcp"
	case "all":
		return ""
	}
	return c.Transport
}

func (c Config) storedPeers() int { return cmp.Or(c.StoredPeers, 10_000) }
func (c Config) searchRuns() int  { return cmp.Or(c.SearchRuns, 20) }

func (c Config) timeout() time.Duration {
	if c.Timeout > 0 {
		return c.Timeout
	}
	return time.Minute + time.Duration(c.peers())*20*time.Millisecond
}

// Result is what Run measured: one part per workload run.
type Result struct {
	Peers          int     `json:"peers"`
	Transport      string  `json:"transport"`
	Rate           float64 `json:"rate"` // peers started per second; 0: all at once
	ConnectionRate int     `json:"connection_rate"`
	Started        string  `json:"started"`
	Seconds        float64 `json:"seconds"`
	// FleetProcesses are the fleet's child processes, empty when it ran in
	// this process; FleetNote says why; OpenFileLimit is this process's.
	FleetProcesses []FleetPart `json:"fleet_processes,omitempty"`
	FleetNote      string      `json:"fleet_note,omitempty"`
	OpenFileLimit  int         `json:"open_file_limit"`
	// LoadAverage is /proc/loadavg's first three fields at the end.
	LoadAverage string `json:"load_average"`
	// Failed is the workload that ended the run with an error (Run's
	// error says why); the ones before it finished and are reported.
	Failed Workload `json:"failed,omitempty"`

	Storm     *StormResult     `json:"storm,omitempty"`
	Settings  *SettingsResult  `json:"settings,omitempty"`
	Reconnect *ReconnectResult `json:"reconnect,omitempty"`
	Lifecycle *LifecycleResult `json:"lifecycle,omitempty"`
	Search    *SearchResult    `json:"search,omitempty"`
}

// Engine is a site and, once the storm has run, a fleet of peers enrolled
// in it. Its workload methods may be called in Run's order; settings,
// reconnect and lifecycle need the storm's peers.
type Engine struct {
	cfg       Config
	removeDir string
	Site      *Site
	// jumpoint carries the fleet when Config.Jumpoint; key is the
	// installer key the fleet uses (Site.Key, or one naming the jumpoint).
	jumpoint *jumpoint.Jumpoint
	key      string
	plan     fleetPlan
	fleet    fleet
	// fleetDone: the lifecycle stopped the fleet.
	fleetDone bool
	// gcPercent is the GC target to restore at Close, once the storm with
	// fleet processes tuned this process as a coordinator's (0: untouched).
	gcPercent int
	storm     *StormResult
}

// New starts the site: a real coordinator in cfg.Dir, an administrator and
// an installer key. Close stops everything.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.Peers < 0 || cfg.Rate < 0 || cfg.StoredPeers < 0 {
		return nil, fmt.Errorf("scale: peers, rate and stored peers must not be negative")
	}
	if t := cfg.transport(); t != "" && t != "tcp" && t != "quic" {
		return nil, fmt.Errorf("scale: transport %q: want tcp, quic or all", cfg.Transport)
	}
	if cfg.QUICPeers < NoQUIC || cfg.QUICPeers > cfg.peers() {
		return nil, fmt.Errorf("scale: %d QUIC peers of %d", cfg.QUICPeers, cfg.peers())
	}
	plan, err := planFleet(cfg, openFileLimit(cfg.peers()))
	if err != nil {
		return nil, fmt.Errorf("scale: %w", err)
	}
	e := &Engine{cfg: cfg, plan: plan}
	dir := cfg.Dir
	if dir == "" {
		tmp, err := os.MkdirTemp("", "jumpmesh-scale-")
		if err != nil {
			return nil, err
		}
		dir, e.removeDir = tmp, tmp
	}
	site, err := NewSite(ctx, SiteConfig{Dir: dir, ConnectionRate: cfg.ConnectionRate, Logger: cfg.Logger})
	if err != nil {
		e.Close()
		return nil, err
	}
	e.Site, e.key = site, site.Key
	if cfg.Jumpoint {
		if e.jumpoint, e.key, err = site.StartJumpoint(ctx, "scale-jumpoint"); err != nil {
			e.Close()
			return nil, err
		}
	}
	return e, nil
}

// Jumpoint is the jumpoint the fleet registers through, nil without
// Config.Jumpoint.
func (e *Engine) Jumpoint() *jumpoint.Jumpoint { return e.jumpoint }

// Run starts an engine, runs the workloads in Run's order and closes it.
// Settings, reconnect and lifecycle run the storm first if it was not
// asked for, and report it too.
func Run(ctx context.Context, cfg Config, workloads ...Workload) (res *Result, err error) {
	if len(workloads) == 0 {
		workloads = Workloads
	}
	start := time.Now()
	e, err := New(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, e.Close()) }()
	res = &Result{Peers: cfg.peers(), Transport: cmp.Or(cfg.transport(), "all"), Rate: cfg.Rate, ConnectionRate: cfg.ConnectionRate,
		Started: start.UTC().Format(time.RFC3339), FleetProcesses: e.plan.Parts, FleetNote: e.plan.Note, OpenFileLimit: e.plan.FileLimit}
	if cfg.FleetNote != nil && e.plan.Note != "" {
		cfg.FleetNote(e.plan.Note)
	}
	want := func(w Workload) bool {
		// Settings, reconnect and lifecycle need the storm's peers.
		return slices.Contains(workloads, w) || w == Storm && slices.ContainsFunc(workloads, func(w Workload) bool { return w == Settings || w == Reconnect || w == Lifecycle })
	}
	steps := []struct {
		w   Workload
		run func() error
	}{
		{Storm, func() (err error) { res.Storm, err = e.Storm(ctx); return err }},
		{Settings, func() (err error) { res.Settings, err = e.Settings(ctx); return err }},
		{Reconnect, func() (err error) { res.Reconnect, err = e.Reconnect(ctx); return err }},
		{Lifecycle, func() (err error) { res.Lifecycle, err = e.Lifecycle(ctx); return err }},
		{Search, func() (err error) { res.Search, err = e.Search(ctx); return err }},
	}
	for _, s := range steps {
		if !want(s.w) {
			continue
		}
		if cfg.Progress != nil {
			cfg.Progress(s.w)
		}
		if err := s.run(); err != nil {
			res.Failed = s.w
			res.Seconds = time.Since(start).Seconds()
			res.LoadAverage = loadAverage()
			return res, fmt.Errorf("%s: %w", s.w, err)
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.LoadAverage = loadAverage()
	return res, nil
}

// Finished tells whether a workload finished (a failed run's result
// reports those before the one that failed).
func (r *Result) Finished() bool {
	return r != nil && (r.Storm != nil || r.Settings != nil || r.Reconnect != nil || r.Lifecycle != nil || r.Search != nil)
}

// Fleet is the storm's fleet: nil before the storm, or when it runs in
// fleet processes.
func (e *Engine) Fleet() *Fleet {
	f, _ := e.fleet.(*Fleet)
	return f
}

// fleet is the storm's peers: a Fleet in this process or a procFleet of
// child processes.
type fleet interface {
	Start(rate float64)
	Wait(ctx context.Context) (time.Duration, error)
	Latencies() []time.Duration
	Totals() FleetTotals
	peerIDs() ([]lpeer.ID, error)
	// failed closes when the fleet can no longer run (a fleet process
	// ended); failure says why.
	failed() <-chan struct{}
	failure() error
	Close() error
}

// A Fleet in this process does not fail apart from the engine.
func (f *Fleet) peerIDs() ([]lpeer.ID, error) { return f.IDs(), nil }
func (f *Fleet) failed() <-chan struct{}      { return nil }
func (f *Fleet) failure() error               { return nil }

// wait bounds one wait for peers; it ends early, with the reason as its
// cause, if the fleet fails.
func (e *Engine) wait(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.timeout())
	if e.fleet == nil {
		return ctx, cancel
	}
	ctx, fail := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	go func() {
		select {
		case <-e.fleet.failed():
			fail(e.fleet.failure())
		case <-stop:
		case <-ctx.Done():
		}
	}()
	return ctx, func() { close(stop); fail(nil); cancel() }
}

// Close stops the fleet and the site, and removes the directory it made.
func (e *Engine) Close() error {
	var errs []error
	if e.fleet != nil {
		errs = append(errs, e.fleet.Close())
	}
	if e.jumpoint != nil {
		errs = append(errs, e.jumpoint.Close())
	}
	if e.Site != nil {
		errs = append(errs, e.Site.Close())
	}
	if e.removeDir != "" {
		errs = append(errs, os.RemoveAll(e.removeDir))
	}
	if e.gcPercent != 0 {
		debug.SetGCPercent(e.gcPercent)
		e.gcPercent = 0
	}
	return errors.Join(errs...)
}
