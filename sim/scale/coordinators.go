package scale

// Several coordinators on one etcd (issue 16 part 2): the same storm of
// fresh peers against one coordinator on Badger (the anchor), then 1, 2
// and 3 coordinators of one site sharing an etcd store, each fleet part
// pinned to one coordinator; and the cost of a store operation through the
// coordinator on etcd against Badger, all measured in one run.

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	lpeer "github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// CoordinatorsConfig is a run of Coordinators. Zero values are defaults.
type CoordinatorsConfig struct {
	// Dir holds the sites (default: a temporary directory, removed).
	Dir string
	// Etcd is the etcd store, etcd://HOST:PORT[,…] (required). Each site
	// uses a prefix of its own under /jumpmesh-scale/, left there: use an
	// etcd of its own (jumpmesh sim scale starts one).
	Etcd string
	// Peers is the storm's size for each configuration (default 300).
	Peers int
	// Counts are the coordinator counts on etcd (default 1, 2, 3).
	Counts []int
	// Ops is how many store operations of each kind the cost comparison
	// times on each backend (default 200).
	Ops int
	// Rounds is how many times each configuration's storm runs (default
	// 3), interleaved; each configuration's row is its median round.
	Rounds int
	// Timeout bounds each storm (default 1 min + 20 ms per peer).
	Timeout time.Duration
	Logger  *slog.Logger
	// Progress, when set, is told as each configuration begins.
	Progress func(string)
}

func (c CoordinatorsConfig) peers() int  { return cmp.Or(c.Peers, 300) }
func (c CoordinatorsConfig) ops() int    { return cmp.Or(c.Ops, 200) }
func (c CoordinatorsConfig) rounds() int { return cmp.Or(c.Rounds, 3) }
func (c CoordinatorsConfig) counts() []int {
	if len(c.Counts) == 0 {
		return []int{1, 2, 3}
	}
	return c.Counts
}

// CoordinatorsResult is one run: the Badger anchor, each etcd
// configuration, and the cost per operation.
type CoordinatorsResult struct {
	Peers  int `json:"peers"`
	Rounds int `json:"rounds"`
	// CPUs is GOMAXPROCS: coordinators and fleet share them, so with few
	// more coordinators measure overhead, not speed-up (Note).
	CPUs        int     `json:"cpus"`
	Note        string  `json:"note"`
	LoadAverage string  `json:"load_average"`
	Started     string  `json:"started"`
	Seconds     float64 `json:"seconds"`
	// Runs are the Badger anchor first, then etcd with each count.
	Runs []CoordinatorsRun `json:"runs"`
	// Ops compares a store operation through the coordinator on etcd
	// (one coordinator) against Badger, timed in this run.
	Ops []OpCost `json:"ops"`
}

// CoordinatorsRun is one configuration's storm.
type CoordinatorsRun struct {
	Store        string `json:"store"` // badger or etcd
	Coordinators int    `json:"coordinators"`
	// Seconds is from the start of the fleets to the last first welcome;
	// PeersPerSecond is Peers over it, RatioToBadger over the anchor's.
	Seconds        float64 `json:"seconds"`
	PeersPerSecond float64 `json:"peers_per_second"`
	RatioToBadger  float64 `json:"ratio_to_badger"`
	Latency        Latency `json:"registration_latency"`
	// CPUPerRegistrationMs is this process's CPU time during the storm
	// over Peers: coordinators and fleet both (the fleet's share is the
	// same in every configuration).
	CPUPerRegistrationMs float64 `json:"cpu_per_registration_ms"`
	// Held is how many peers each coordinator holds (its pinned part of
	// the fleet); Online how many each counts online at the end — the
	// whole site's on etcd, where every coordinator follows the others'
	// presence records.
	Held   []int       `json:"held_per_coordinator"`
	Online []int       `json:"online_per_coordinator"`
	Fleet  FleetTotals `json:"fleet"`
	// RoundsPerSecond is every round's peers per second, in run order
	// (the row is the median round's).
	RoundsPerSecond []float64 `json:"rounds_peers_per_second"`
}

// median is the run with the median peers per second, with every round's
// rate.
func median(runs []CoordinatorsRun) CoordinatorsRun {
	var all []float64
	for _, r := range runs {
		all = append(all, r.PeersPerSecond)
	}
	sorted := slices.Clone(runs)
	slices.SortFunc(sorted, func(a, b CoordinatorsRun) int { return cmp.Compare(a.PeersPerSecond, b.PeersPerSecond) })
	m := sorted[len(sorted)/2]
	m.RoundsPerSecond = all
	return m
}

// OpCost is one kind of operation on both backends.
type OpCost struct {
	Op       string  `json:"op"`
	What     string  `json:"what"`
	Ops      int     `json:"ops"`
	Badger   Latency `json:"badger"`
	Etcd     Latency `json:"etcd"`
	RatioP50 float64 `json:"ratio_p50"` // etcd ÷ Badger
}

// CoordinatorsNote says what the figures on a small machine are.
const CoordinatorsNote = "coordinators and peers share this process and its %d CPUs: more coordinators add work (watches, presence, etcd round trips) without adding CPUs, so this measures the overhead of several coordinators, not a speed-up"

// Coordinators runs the storm against one coordinator on Badger, then
// against each count of coordinators on cfg.Etcd, and times store
// operations on both backends.
func Coordinators(ctx context.Context, cfg CoordinatorsConfig) (*CoordinatorsResult, error) {
	if cfg.Etcd == "" {
		return nil, errors.New("scale: coordinators: no etcd store (etcd://HOST:PORT)")
	}
	if cfg.Peers < 0 || cfg.Ops < 0 {
		return nil, errors.New("scale: coordinators: peers and ops must not be negative")
	}
	for _, n := range cfg.counts() {
		if n < 1 || n > 9 {
			return nil, fmt.Errorf("scale: coordinators: %d coordinators: 1 to 9", n)
		}
	}
	dir := cfg.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "jumpmesh-scale-coordinators")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	t0 := time.Now()
	res := &CoordinatorsResult{Peers: cfg.peers(), Rounds: cfg.rounds(), CPUs: runtime.GOMAXPROCS(0), Started: t0.UTC().Format(time.RFC3339)}
	res.Note = fmt.Sprintf(CoordinatorsNote, res.CPUs)
	type plan struct {
		store string
		n     int
	}
	plans := []plan{{"badger", 1}}
	for _, n := range cfg.counts() {
		plans = append(plans, plan{"etcd", n})
	}
	var badgerSite, etcdSite *multiSite
	defer func() {
		for _, s := range []*multiSite{badgerSite, etcdSite} {
			if s != nil {
				s.Close()
			}
		}
	}()
	// Rounds interleave the configurations, each round in another order,
	// so that a busy moment of the machine or the process's warm-up does
	// not fall on one configuration: each row is its median round.
	rounds := make([][]CoordinatorsRun, len(plans))
	for r := range cfg.rounds() {
		for j := range plans {
			i := (j + r) % len(plans)
			p := plans[i]
			if cfg.Progress != nil {
				cfg.Progress(fmt.Sprintf("round %d: %d coordinator(s) on %s", r+1, p.n, p.store))
			}
			url := ""
			if p.store == "etcd" {
				url = cfg.Etcd
			}
			s, err := newMultiSite(ctx, filepath.Join(dir, fmt.Sprintf("%d-%d-%s-%d", r, i, p.store, p.n)), url, p.n, cfg.Logger)
			if err != nil {
				return nil, fmt.Errorf("%d coordinator(s) on %s: %w", p.n, p.store, err)
			}
			run, err := s.storm(ctx, cfg)
			if err != nil {
				s.Close()
				return nil, fmt.Errorf("%d coordinator(s) on %s: %w", p.n, p.store, err)
			}
			run.Store = p.store
			rounds[i] = append(rounds[i], *run)
			// The first one-coordinator sites stay for the operation costs.
			switch {
			case p.store == "badger" && badgerSite == nil:
				badgerSite = s
			case p.store == "etcd" && p.n == 1 && etcdSite == nil:
				etcdSite = s
			default:
				s.Close()
			}
		}
	}
	for _, runs := range rounds {
		res.Runs = append(res.Runs, median(runs))
	}
	for i := range res.Runs {
		res.Runs[i].RatioToBadger = res.Runs[i].PeersPerSecond / res.Runs[0].PeersPerSecond
	}
	if badgerSite != nil && etcdSite != nil {
		if cfg.Progress != nil {
			cfg.Progress("store operations on Badger and etcd")
		}
		ops, err := opCosts(ctx, badgerSite, etcdSite, cfg.ops())
		if err != nil {
			return nil, fmt.Errorf("operation costs: %w", err)
		}
		res.Ops = ops
	}
	res.Seconds = time.Since(t0).Seconds()
	res.LoadAverage = loadAverage()
	return res, nil
}

// multiSite is one site served by n coordinators in this process: Badger
// (n = 1) or etcd under a prefix of its own.
type multiSite struct {
	dir    string
	clock  *mesh.ManualClock
	coords []*coordinator.Coordinator
	admin  *console.Client
	key    string
	etcd   coordinator.StoreConfig
	// anyInstaller is an installer's ID, for the read the costs time.
	anyInstaller string
}

func newMultiSite(ctx context.Context, dir, etcdURL string, n int, log *slog.Logger) (_ *multiSite, err error) {
	s := &multiSite{dir: dir, clock: mesh.NewManualClock(time.Now().UTC().Truncate(time.Second))}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	data := filepath.Join(dir, "c0")
	init, err := coordinator.InitSite(coordinator.InitConfig{DataDir: data, Clock: s.clock, HTTPAddr: "off",
		Listen: []string{"/ip4/127.0.0.1/tcp/0"}})
	if err != nil {
		return nil, fmt.Errorf("init site: %w", err)
	}
	if etcdURL != "" {
		var b [6]byte
		rand.Read(b[:])
		s.etcd = coordinator.StoreConfig{URL: etcdURL, Etcd: coordinator.EtcdConfig{Prefix: "/jumpmesh-scale/" + hex.EncodeToString(b[:]) + "/"}}
		if _, err := coordinator.Migrate(coordinator.MigrateConfig{DataDir: data, To: s.etcd, Logger: log}); err != nil {
			return nil, fmt.Errorf("moving the site to etcd: %w", err)
		}
	}
	for i := range n {
		d := filepath.Join(dir, fmt.Sprintf("c%d", i))
		if i > 0 {
			if err := copySiteFiles(data, d); err != nil {
				return nil, err
			}
		}
		store := s.etcd
		if store.IsEtcd() {
			store.Instance = fmt.Sprintf("scale-c%d", i)
		}
		c, err := coordinator.New(coordinator.Config{DataDir: d, Clock: s.clock, HTTPAddr: "off",
			Listen: []string{"/ip4/127.0.0.1/tcp/0"}, AdmissionRate: -1, Logger: log, Store: store})
		if err != nil {
			return nil, fmt.Errorf("starting coordinator %d: %w", i, err)
		}
		s.coords = append(s.coords, c)
	}
	if s.admin, _, err = console.Login(ctx, filepath.Join(dir, "admin"), s.coords[0].LoginAddrs()[0].String(), init.InviteCode); err != nil {
		return nil, fmt.Errorf("admin login: %w", err)
	}
	create := &pb.InstallerCreateRequest{Defaults: &pb.InstallerDefaults{Tag: "scale"}, ValidForSeconds: int64(365 * 24 * time.Hour / time.Second)}
	resp, err := s.do(ctx, 0, &pb.Request{Body: &pb.Request_InstallerCreate{InstallerCreate: create}})
	if err != nil {
		return nil, fmt.Errorf("installer key: %w", err)
	}
	s.key = resp.GetInstaller().GetKey()
	return s, nil
}

// copySiteFiles gives another coordinator the site's key and site.json.
func copySiteFiles(from, to string) error {
	if err := os.MkdirAll(to, 0o700); err != nil {
		return err
	}
	for _, f := range []string{"site.key", "site.json"} {
		b, err := os.ReadFile(filepath.Join(from, f))
		if err == nil {
			err = os.WriteFile(filepath.Join(to, f), b, 0o600)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// do sends req as the administrator to coordinator i's control service in
// this process.
func (s *multiSite) do(ctx context.Context, i int, req *pb.Request) (*pb.Response, error) {
	return s.coords[i].Service().Handle(ctx, s.admin.ID(), req)
}

// storm starts one fleet per coordinator (the peers split evenly, each
// part dialing its coordinator's TCP address only) all at once and waits
// for every first welcome.
func (s *multiSite) storm(ctx context.Context, cfg CoordinatorsConfig) (*CoordinatorsRun, error) {
	n := cfg.peers()
	k := len(s.coords)
	var fleets []*Fleet
	var held []int
	defer func() {
		for _, f := range fleets {
			f.Close()
		}
	}()
	for i, c := range s.coords {
		part := n / k
		if i < n%k {
			part++
		}
		if part == 0 {
			continue
		}
		var addrs []ma.Multiaddr
		for _, a := range c.LoginAddrs() {
			if t, _ := lpeer.SplitAddr(a); t != nil {
				addrs = append(addrs, t)
			}
		}
		f, err := NewFleet(FleetConfig{Key: s.key, Peers: part, Transport: "tcp", Hostname: fmt.Sprintf("c%d", i), Addrs: addrs})
		if err != nil {
			return nil, err
		}
		fleets = append(fleets, f)
		held = append(held, part)
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = time.Minute + time.Duration(n)*20*time.Millisecond
	}
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cpu0 := cpuTime()
	start := time.Now()
	for _, f := range fleets {
		f.Start(0)
	}
	var lat []time.Duration
	totals := FleetTotals{}
	for _, f := range fleets {
		if _, err := f.Wait(wctx); err != nil {
			return nil, err
		}
		lat = append(lat, f.Latencies()...)
	}
	took := time.Since(start)
	cpu := cpuTime() - cpu0
	for _, f := range fleets {
		totals = totals.plus(f.Totals())
	}
	run := &CoordinatorsRun{Coordinators: k, Seconds: took.Seconds(), PeersPerSecond: float64(n) / took.Seconds(),
		Latency: latencyOf(lat), CPUPerRegistrationMs: float64(cpu.Microseconds()) / 1000 / float64(n), Held: held, Fleet: totals}
	for _, c := range s.coords {
		_, on := c.Service().PeerCounts()
		run.Online = append(run.Online, on)
	}
	return run, nil
}

// opCosts times ops operations of each kind through the first coordinator
// of each site, alternating the backends so that both see the same load.
func opCosts(ctx context.Context, badger, etcd *multiSite, ops int) ([]OpCost, error) {
	kinds := []struct {
		op, what string
		req      func(i int, s *multiSite) *pb.Request
	}{
		{"write", "installer create (one transaction with its audit event)", func(i int, _ *multiSite) *pb.Request {
			return &pb.Request{Body: &pb.Request_InstallerCreate{InstallerCreate: &pb.InstallerCreateRequest{
				Defaults: &pb.InstallerDefaults{Comments: fmt.Sprintf("op %d", i)}, ValidForSeconds: 3600}}}
		}},
		{"read", "installer show (one record read)", func(_ int, s *multiSite) *pb.Request {
			return &pb.Request{Body: &pb.Request_InstallerShow{InstallerShow: &pb.NameRequest{Name: s.anyInstaller}}}
		}},
		{"settings", "settings set (read-modify-write of the settings record)", func(i int, _ *multiSite) *pb.Request {
			return &pb.Request{Body: &pb.Request_SettingsSet{SettingsSet: &pb.SettingsSetRequest{Values: map[string]string{"stats-interval": fmt.Sprintf("%ds", 60+i%60)}}}}
		}},
	}
	for _, s := range []*multiSite{badger, etcd} {
		resp, err := s.do(ctx, 0, &pb.Request{Body: &pb.Request_InstallerList{InstallerList: &pb.InstallerListRequest{}}})
		if err != nil {
			return nil, err
		}
		if l := resp.GetInstallers().GetInstallers(); len(l) > 0 {
			s.anyInstaller = l[0].GetId()
		}
	}
	var out []OpCost
	for _, k := range kinds {
		times := [2][]time.Duration{}
		for i := range ops {
			for b, s := range []*multiSite{badger, etcd} {
				t0 := time.Now()
				if _, err := s.do(ctx, 0, k.req(i, s)); err != nil {
					return nil, fmt.Errorf("%s: %w", k.op, err)
				}
				times[b] = append(times[b], time.Since(t0))
			}
		}
		c := OpCost{Op: k.op, What: k.what, Ops: ops, Badger: latencyOf(times[0]), Etcd: latencyOf(times[1])}
		if c.Badger.P50 > 0 {
			c.RatioP50 = c.Etcd.P50 / c.Badger.P50
		}
		out = append(out, c)
	}
	return out, nil
}

// Close stops the coordinators and the administrator's console. The
// site's etcd prefix (/jumpmesh-scale/<random>/) stays.
func (s *multiSite) Close() {
	if s.admin != nil {
		s.admin.Close()
	}
	for _, c := range slices.Backward(s.coords) {
		c.Close()
	}
	s.coords = nil
}

// cpuTime is this process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// loadAverage is /proc/loadavg's first three fields.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}
