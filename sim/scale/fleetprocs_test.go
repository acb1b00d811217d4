package scale_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/scale"
)

// thisBinary runs a fleet process as this test binary (TestMain serves it).
var thisBinary = []string{os.Args[0]}

// TestStormInFleetProcesses runs the storm's 40 peers in three fleet
// processes (two over TCP, one over QUIC), restarts the coordinator under
// them (after a settings change) and walks them through the lifecycle: every figure comes from the
// processes, and the memory is the coordinator's alone.
func TestStormInFleetProcesses(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (scale_test.go)
	const peers = 40
	e := newEngine(t, scale.Config{Peers: peers, Fleets: 2, QUICPeers: 10, FleetCommand: thisBinary})
	if e.Fleet() != nil {
		t.Fatal("a fleet in this process")
	}
	storm, err := e.Storm(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if storm.Registered != peers || storm.Online != peers || storm.Fleet.Welcomed != peers || storm.Latency.Count != peers {
		t.Fatalf("storm: %+v", storm)
	}
	if storm.Memory.Ends != "coordinator" || storm.Memory.IdleHost <= 0 || storm.PeersPerSecond <= 0 || storm.CPUPerPeerMs <= 0 || storm.FleetCPUPerPeerMs <= 0 {
		t.Fatalf("storm memory: %+v", storm.Memory)
	}
	if pids := scale.FleetPIDs(e); len(pids) != 3 {
		t.Fatalf("%d fleet processes", len(pids))
	}
	// The processes' peers are named apart, each under the key's tag.
	for _, name := range []string{"scale-00000", "scale1-00000", "scale2-00009"} {
		if views, err := e.Site.Peers(ctx(t), name); err != nil || len(views) != 1 {
			t.Fatalf("peer %s: %d found, %v", name, len(views), err)
		}
	}
	// A settings change reaches every peer in every process.
	set, err := e.Settings(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if set.Peers != peers || set.ReceivedSeconds <= 0 || set.SlowPeers != 0 {
		t.Fatalf("settings: %+v", set)
	}
	rc, err := e.Reconnect(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if rc.Fleet.Welcomes < peers || rc.Fleet.GaveUp != 0 {
		t.Fatalf("reconnect: %+v", rc)
	}
	lc, err := e.Lifecycle(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if last := lc.Steps[len(lc.Steps)-1]; lc.Peers != peers || last.States.Deleted != peers {
		t.Fatalf("lifecycle: %d peers, last step %+v", lc.Peers, last)
	}
	for _, pid := range scale.FleetPIDs(e) {
		if err := syscall.Kill(pid, 0); err == nil {
			t.Errorf("fleet process %d still runs after the lifecycle stopped the fleet", pid)
		}
	}
}

// TestAFleetProcessThatDiesEndsTheRun kills one of two fleet processes
// with every peer online: the next workload fails at once, naming the
// process and how it ended, instead of waiting out its timeout.
func TestAFleetProcessThatDiesEndsTheRun(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (scale_test.go)
	e := newEngine(t, scale.Config{Peers: 20, Fleets: 2, FleetCommand: thisBinary, Timeout: 10 * time.Minute})
	if _, err := e.Storm(ctx(t)); err != nil {
		t.Fatal(err)
	}
	pid := scale.FleetPIDs(e)[1]
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err := e.Reconnect(ctx(t))
	if err == nil || !strings.Contains(err.Error(), "fleet process 2 of 2") || !strings.Contains(err.Error(), "signal: killed") {
		t.Fatalf("reconnect after a fleet process was killed: %v", err)
	}
	// Well before the 10 minutes the wait would allow.
	if took := time.Since(start); took > time.Minute {
		t.Fatalf("the failure took %s to tell", took)
	}
}

// TestAFleetProcessThatCannotStartSaysWhy: what the process wrote on
// stderr is the engine's error, and nothing is left running.
func TestAFleetProcessThatCannotStartSaysWhy(t *testing.T) {
	for _, tc := range []struct {
		name string
		cmd  []string
		want string
	}{
		{"fails", []string{"/bin/sh", "-c", "echo no room for peers >&2; exit 3"}, "exit status 3; its output: no room for peers"},
		{"missing", []string{"/nonexistent/jumpmesh"}, "starting fleet process 1 of 2"},
	} {
		e := newEngine(t, scale.Config{Peers: 4, Fleets: 2, FleetCommand: tc.cmd})
		_, err := e.Storm(ctx(t))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Fatalf("%s: %v, want an error saying %q", tc.name, err, tc.want)
		}
	}
}

// TestFleetProcessRefusesBadInput: a fleet process fed a config or a
// command it does not know (by a local user, or a parent of another
// version) fails with a message, builds nothing and writes no event.
func TestFleetProcessRefusesBadInput(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "no fleet config"},
		{"{not json\n", "fleet config"},
		{`{"peers": 0}` + "\n", "0 peers"},
		{`{"peers": 2, "key": "jm1garbage"}` + "\n", "fleet:"},
	} {
		var events bytes.Buffer
		err := scale.ServeFleetProcess(strings.NewReader(tc.in), &events)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error saying %q", tc.in, err, tc.want)
		}
		if events.Len() > 0 {
			t.Errorf("%q: events written: %s", tc.in, events.String())
		}
	}
	// A real key, then a command it does not know: the hosts are built
	// ("ready"), the command refused, and the hosts closed.
	e := newEngine(t, scale.Config{Peers: 1})
	var events bytes.Buffer
	in := `{"peers": 2, "key": "` + e.Site.Key + `"}` + "\nrm -rf /\n"
	err := scale.ServeFleetProcess(strings.NewReader(in), &events)
	if err == nil || !strings.Contains(err.Error(), `unknown fleet command "rm -rf /"`) {
		t.Fatalf("unknown command: %v", err)
	}
	sc := bufio.NewScanner(&events)
	if !sc.Scan() || !strings.Contains(sc.Text(), `"event":"ready"`) || sc.Scan() {
		t.Fatalf("events: %q", events.String())
	}
}

// TestServeFleetWithHooks drives a fleet child in this process, as the
// peer/ benchmarks' children are driven: the owner's hooks run around the
// storm, and "idle" and "stop" answer with the child's CPU and totals.
func TestServeFleetWithHooks(t *testing.T) {
	e := newEngine(t, scale.Config{Peers: 1})
	cmdR, cmdW := io.Pipe()
	evR, evW := io.Pipe()
	var went, welcomed, idleStarted, idleEnded atomic.Bool
	hooks := scale.ChildHooks{
		Go:       func() error { went.Store(true); return nil },
		Welcomed: func() { welcomed.Store(went.Load()) },
		Idle: func() func() {
			idleStarted.Store(true)
			return func() { idleEnded.Store(idleStarted.Load()) }
		},
	}
	served := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(cmdR)
		served <- scale.ServeFleet(scale.ChildConfig{Key: e.Site.Key, Peers: 3, Transport: "tcp", Hostname: "hook"}, sc, evW, hooks)
		evW.Close()
	}()
	events := make(chan scale.FleetEvent, 8)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(evR)
		for sc.Scan() {
			var ev scale.FleetEvent
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				events <- ev
			}
		}
	}()
	next := func(want string) scale.FleetEvent {
		t.Helper()
		select {
		case ev := <-events:
			if ev.Event != want {
				t.Fatalf("event %q, want %q: %+v", ev.Event, want, ev)
			}
			return ev
		case <-ctx(t).Done():
			t.Fatalf("no %q", want)
		}
		return scale.FleetEvent{}
	}
	next("ready")
	io.WriteString(cmdW, "go\n")
	if ev := next("welcomed"); ev.Elapsed <= 0 || ev.CPU <= 0 || !welcomed.Load() {
		t.Fatalf("welcomed: %+v, hooks ran in order: %v", ev, welcomed.Load())
	}
	io.WriteString(cmdW, "idle 20\n")
	if ev := next("idle"); ev.Elapsed != 20*time.Millisecond || !idleEnded.Load() {
		t.Fatalf("idle: %+v, its hooks ran in order: %v", ev, idleEnded.Load())
	}
	io.WriteString(cmdW, "stop\n")
	if ev := next("stopped"); ev.Totals == nil || ev.Totals.Welcomed != 3 || ev.Welcomes != 3 {
		t.Fatalf("stopped: %+v", ev)
	}
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	cmdW.Close()
}
