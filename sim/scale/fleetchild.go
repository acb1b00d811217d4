package scale

// A fleet in a child process: the child side of the protocol (the parent's
// is fleetprocs.go). `jumpmesh sim fleet` (hidden) and the peer/ scale
// benchmarks' fleet children serve it.
//
//  1. The parent starts the child with pipes on its stdin and on fd 3,
//     and FleetChildEnv set. The child reads its ChildConfig from the
//     first line of stdin (JSON) — the benchmarks pass it their own way
//     and call ServeFleet. Stdin, not the command line: the config holds
//     the site's installer key, and any local user can read another's
//     /proc/PID/cmdline.
//  2. The child builds the fleet's hosts and writes "ready" on fd 3 (its
//     heap and stacks after a GC: the fleet's own weight).
//  3. "go [RATE]" starts the peers, all at once or RATE a second. Once
//     every peer has been welcomed the child writes "welcomed" by itself:
//     the time from "go", its CPU and its GC's share of it.
//  4. Questions, each answered by the event of its name: "totals" (the
//     fleet's counts), "latencies" (each welcomed peer's registration
//     latency), "ids" (its peer IDs), "reported FILE MILLIS" (wait
//     for every first statistics, then write the IDs to FILE), "updates N
//     MILLIS" (wait until the peers have read N settings updates), "idle
//     MILLIS" (the child's CPU over MILLIS, its peers online and idle).
//  5. "stop", or the end of stdin (the parent is gone), closes the hosts;
//     after "stop" the child writes "stopped" with the totals and exits 0.
//
// Events are JSON lines; a child that fails writes why on stderr and exits
// 1, which the parent reports with that text.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// FleetChildEnv is set (to "1") in the environment of every fleet child
// the engine starts; `jumpmesh sim fleet` refuses to run without it.
const FleetChildEnv = "JUMPMESH_SCALE_FLEET_CHILD"

// ChildConfig is what a fleet child runs.
type ChildConfig struct {
	// Key is the installer key the peers use.
	Key   string `json:"key"`
	Peers int    `json:"peers"`
	// Transport, "tcp" or "quic", keeps only the key's addresses of that
	// transport.
	Transport string `json:"transport"`
	// Hostname prefixes the peers' names (FleetConfig.Hostname).
	Hostname string `json:"hostname"`
}

// FleetEvent is a line a fleet child writes on fd 3. Each event uses some
// of the fields; their JSON names are the peer/ benchmarks' events'.
type FleetEvent struct {
	Event string `json:"event"`
	// ready: the child's heap in use and stacks after a GC, hosts built.
	Heap  int64 `json:"heap,omitempty"`
	Stack int64 `json:"stack,omitempty"`
	// welcomed: from "go" to the last first welcome, and the CPU the
	// child used in that time, and its GC's CPU (runtime/metrics'
	// estimate) and cycles; idle: the same over the interval asked.
	Elapsed  time.Duration `json:"elapsed,omitempty"`
	CPU      time.Duration `json:"cpu,omitempty"`
	GCCPU    time.Duration `json:"gc_cpu,omitempty"`
	GCCycles int64         `json:"gc_cycles,omitempty"`
	// welcomed, idle: the part of GCCPU its idle mark workers spent
	// (marking on processors with nothing else to run), and the minor
	// page faults in that time.
	GCIdle time.Duration `json:"gc_idle,omitempty"`
	Faults int64         `json:"faults,omitempty"`
	// latencies: each welcomed peer's time from its start to its first
	// welcome, sorted.
	Latencies []time.Duration `json:"latencies,omitempty"`
	// reported: peers that sent their first statistics; updates: settings
	// updates the peers read.
	Online int64 `json:"online,omitempty"`
	// totals, stopped: the fleet's counts.
	Totals *FleetTotals `json:"totals,omitempty"`
	// stopped: the counts again, as the benchmarks read them.
	Welcomes int64            `json:"welcomes,omitempty"`
	Retries  int64            `json:"retries,omitempty"`
	Refusals int64            `json:"refusals,omitempty"`
	Failures int64            `json:"failures,omitempty"`
	Down     int64            `json:"down,omitempty"`
	GaveUp   int64            `json:"gave_up,omitempty"`
	Reasons  map[string]int64 `json:"reasons,omitempty"`
	// ids: the fleet's peer IDs, in peer order.
	IDs []string `json:"ids,omitempty"`
	// Sample: an error, or a summary (welcomed: the first welcomes'
	// percentiles).
	Sample string `json:"sample,omitempty"`
}

// ChildHooks add to a fleet child what its owner measures besides (the
// peer/ benchmarks' CPU and heap profiles). The zero value adds nothing.
type ChildHooks struct {
	// Go runs just before "go" starts the peers; an error ends the child.
	Go func() error
	// Welcomed runs once every peer has been welcomed, before the
	// "welcomed" event is written.
	Welcomed func()
	// Idle runs as an "idle" interval starts; what it returns, as it ends.
	Idle func() (end func())
}

// ServeFleetProcess is a fleet child whose config is the first line of
// commands: it reads it, then serves as ServeFleet.
func ServeFleetProcess(commands io.Reader, events io.Writer) error {
	sc := newLineScanner(commands)
	if !sc.Scan() {
		return fmt.Errorf("no fleet config on stdin: %w", errors.Join(sc.Err(), io.ErrUnexpectedEOF))
	}
	var cfg ChildConfig
	if err := json.Unmarshal(sc.Bytes(), &cfg); err != nil {
		return fmt.Errorf("fleet config: %w", err)
	}
	return ServeFleet(cfg, sc, events, ChildHooks{})
}

// newLineScanner reads lines of up to 64 MB (an event with 20,000 IDs or
// latencies is about 1 MB).
func newLineScanner(r io.Reader) *bufio.Scanner {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	return sc
}

// ServeFleet is a fleet child: it runs cfg's peers as commands say, and
// writes its events to events (see the top of this file). It returns
// when the commands end: nil after "stop".
func ServeFleet(cfg ChildConfig, commands *bufio.Scanner, events io.Writer, hooks ChildHooks) error {
	if cfg.Peers <= 0 {
		return fmt.Errorf("fleet config: %d peers", cfg.Peers)
	}
	emit := func(ev FleetEvent) {
		line, _ := json.Marshal(ev)
		events.Write(append(line, '\n'))
	}
	f, err := NewFleet(FleetConfig{Key: cfg.Key, Peers: cfg.Peers, Transport: cfg.Transport, Hostname: cfg.Hostname})
	if err != nil {
		return err
	}
	defer f.Close()
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	emit(FleetEvent{Event: "ready", Heap: int64(ms.HeapInuse), Stack: int64(ms.StackInuse)})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	started := false
	for commands.Scan() {
		c := strings.Fields(commands.Text())
		if len(c) == 0 {
			continue
		}
		millis := func(i int) time.Duration {
			ms, _ := strconv.Atoi(c[i])
			return time.Duration(ms) * time.Millisecond
		}
		switch {
		case c[0] == "go" && len(c) <= 2 && !started:
			rate := 0.0
			if len(c) == 2 {
				if rate, err = strconv.ParseFloat(c[1], 64); err != nil || rate < 0 {
					return fmt.Errorf("go %q: want a rate ≥ 0", c[1])
				}
			}
			started = true
			if hooks.Go != nil {
				if err := hooks.Go(); err != nil {
					return err
				}
			}
			at := ReadProcessCPU()
			f.Start(rate)
			go func() {
				if took, err := f.Wait(ctx); err == nil {
					ev := ReadProcessCPU().since(at, "welcomed")
					if hooks.Welcomed != nil {
						hooks.Welcomed()
					}
					ev.Elapsed, ev.Sample = took, firstWelcomes(f.Latencies())
					emit(ev)
				}
			}()
		case c[0] == "totals" && len(c) == 1:
			t := f.Totals()
			emit(FleetEvent{Event: "totals", Totals: &t})
		case c[0] == "latencies" && len(c) == 1:
			emit(FleetEvent{Event: "latencies", Latencies: f.Latencies()})
		case c[0] == "ids" && len(c) == 1:
			var ids []string
			for _, id := range f.IDs() {
				ids = append(ids, id.String())
			}
			emit(FleetEvent{Event: "ids", IDs: ids})
		case c[0] == "reported" && len(c) == 3:
			wctx, wcancel := context.WithTimeout(ctx, millis(2))
			err := f.WaitReported(wctx)
			wcancel()
			if err == nil {
				err = writeIDs(c[1], f)
			}
			emit(FleetEvent{Event: "reported", Online: f.Totals().Reported, Sample: fmt.Sprint(err)})
		case c[0] == "updates" && len(c) == 3:
			want, _ := strconv.ParseInt(c[1], 10, 64)
			wctx, wcancel := context.WithTimeout(ctx, millis(2))
			_ = poll(wctx, func() bool { return f.Totals().Updates >= want }, func() string { return "" })
			wcancel()
			emit(FleetEvent{Event: "updates", Online: f.Totals().Updates})
		case c[0] == "idle" && len(c) == 2:
			end := func() {}
			if hooks.Idle != nil {
				end = hooks.Idle()
			}
			at := ReadProcessCPU()
			time.Sleep(millis(1)) // a measuring interval, not a wait for an event
			ev := ReadProcessCPU().since(at, "idle")
			end()
			ev.Elapsed = millis(1)
			emit(ev)
		case c[0] == "stop" && len(c) == 1:
			cancel()
			f.Close()
			t := f.Totals()
			emit(FleetEvent{Event: "stopped", Totals: &t, Welcomes: t.Welcomes, Retries: t.Retries, Refusals: t.Refusals,
				Failures: t.Failures, Down: t.Down, GaveUp: t.GaveUp, Sample: t.Sample, Reasons: t.FailureReasons})
			return nil
		default:
			return fmt.Errorf("unknown fleet command %q", commands.Text())
		}
	}
	// The parent is gone (or closed the pipe): stop without a word.
	return errors.Join(commands.Err(), errors.New("stdin closed before stop"))
}

// firstWelcomes is the first welcomes' shape: a tail of late dials shows
// as p99 or the last far past p90.
func firstWelcomes(lat []time.Duration) string {
	if len(lat) == 0 {
		return ""
	}
	q := func(p float64) string {
		return lat[min(len(lat)-1, int(p*float64(len(lat))))].Round(10 * time.Millisecond).String()
	}
	return fmt.Sprintf("first welcomes p10 %s, p50 %s, p90 %s, p99 %s, last %s", q(0.1), q(0.5), q(0.9), q(0.99), lat[len(lat)-1].Round(10*time.Millisecond))
}

// ProcessCPU is what this process has spent so far, as a fleet child (and
// the peer/ benchmarks' coordinator process) reports it: its CPU, its
// GC's CPU (runtime/metrics' estimate) and the part of that its idle mark
// workers spent (marking on processors with nothing else to run), its
// completed GC cycles and its minor page faults.
type ProcessCPU struct {
	CPU, GC, GCIdle time.Duration
	Cycles, Faults  int64
}

// ReadProcessCPU reads ProcessCPU now.
// One getrusage and one read of runtime/metrics: the GC's CPU (mark
// workers, assists and pauses: the runtime's estimate), its idle marking
// and its completed cycles.
func ReadProcessCPU() ProcessCPU {
	var c ProcessCPU
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		c.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		c.Faults = ru.Minflt
	}
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}, {Name: "/cpu/classes/gc/mark/idle:cpu-seconds"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	c.GC, c.GCIdle, c.Cycles = metricSeconds(s[0]), metricSeconds(s[1]), metricCount(s[2])
	return c
}

// since is the event named event with what was spent from at to c.
func (c ProcessCPU) since(at ProcessCPU, event string) FleetEvent {
	return FleetEvent{Event: event, CPU: c.CPU - at.CPU, GCCPU: c.GC - at.GC, GCCycles: c.Cycles - at.Cycles,
		GCIdle: c.GCIdle - at.GCIdle, Faults: c.Faults - at.Faults}
}

func metricSeconds(s metrics.Sample) time.Duration {
	if s.Value.Kind() != metrics.KindFloat64 {
		return 0
	}
	return time.Duration(s.Value.Float64() * float64(time.Second))
}

func metricCount(s metrics.Sample) int64 {
	if s.Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(s.Value.Uint64())
}

// writeIDs writes the fleet's peer IDs to path, one a line.
func writeIDs(path string, f *Fleet) error {
	var b strings.Builder
	for _, id := range f.IDs() {
		b.WriteString(id.String())
		b.WriteByte('\n')
	}
	return os.WriteFile(path, []byte(b.String()), 0o600)
}
