package main

import (
	"strings"
	"testing"
)

// TestSimScaleThroughTheCLI runs every workload of the in-process engine
// with 20 peers through the built binary, as a script reading --json would.
func TestSimScaleThroughTheCLI(t *testing.T) {
	var res struct {
		Peers int
		Storm struct {
			Registered, Online int
			PeersPerSecond     float64 `json:"peers_per_second"`
			Latency            struct {
				Count int
				P99   float64 `json:"p99_ms"`
			} `json:"registration_latency"`
		}
		Reconnect struct {
			Peers   int
			Seconds float64
		}
		Lifecycle struct {
			Steps []struct {
				Name   string
				States struct{ Offline, Lost, Deleted int }
			}
		}
		Search struct {
			Known   int
			Queries []struct {
				Query         string
				Matches       int
				Process       struct{ Count int }
				ProcessJSON   struct{ Count int } `json:"process_json"`
				ProcessErrors int                 `json:"process_errors"`
				ProcessError  string              `json:"process_error"`
			}
			ProcessGoalRatio float64 `json:"process_goal_ratio"`
		}
	}
	home := t.TempDir()
	ok(t, home, &res, "sim", "scale", "--peers", "20", "--stored", "300", "--runs", "2", "--dir", t.TempDir(), "--json")
	if res.Peers != 20 || res.Storm.Registered != 20 || res.Storm.Online != 20 || res.Storm.Latency.Count != 20 ||
		res.Storm.PeersPerSecond <= 0 || res.Storm.Latency.P99 <= 0 {
		t.Fatalf("storm: %+v", res.Storm)
	}
	if res.Reconnect.Peers != 20 || res.Reconnect.Seconds <= 0 {
		t.Fatalf("reconnect: %+v", res.Reconnect)
	}
	steps := res.Lifecycle.Steps
	if len(steps) != 5 || steps[0].States.Offline != 20 || steps[2].States.Lost != 20 || steps[4].States.Deleted != 20 {
		t.Fatalf("lifecycle: %+v", steps)
	}
	// The fleet's peers were deleted before the records were written.
	if res.Search.Known != 300 || len(res.Search.Queries) == 0 || res.Search.Queries[0].Matches != 1 {
		t.Fatalf("search: %+v", res.Search)
	}
	// Each query also ran as `jumpmesh ls` and `ls --json` commands, each a
	// process of this binary, listing what the service listed.
	for _, q := range res.Search.Queries {
		if q.Process.Count != 2 || q.ProcessJSON.Count != 2 || q.ProcessErrors != 0 {
			t.Fatalf("search %q as commands: %+v", q.Query, q)
		}
	}
	if res.Search.ProcessGoalRatio <= 0 {
		t.Fatalf("search: no goal-ratio of the commands: %+v", res.Search)
	}

	r := jm(t, home, "sim", "scale", "--workload", "storm", "--peers", "5")
	if r.code != 0 || !strings.Contains(r.stdout, "registered / online:") || !strings.Contains(r.stdout, "5 / 5") {
		t.Fatalf("human output: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := jm(t, home, "sim", "scale", "--workload", "storms"); r.code != exitUsage {
		t.Fatalf("unknown workload: exit %d, %q", r.code, r.stderr)
	}
}

// TestSimScaleInFleetProcesses runs the storm's peers in two fleet
// processes of the built binary (and one more over QUIC), as a 20,000-peer
// run does: the memory figure says it is the coordinator's alone.
func TestSimScaleInFleetProcesses(t *testing.T) {
	var res struct {
		FleetProcesses []struct {
			Peers     int
			Transport string
		} `json:"fleet_processes"`
		FleetNote     string `json:"fleet_note"`
		OpenFileLimit int    `json:"open_file_limit"`
		LoadAverage   string `json:"load_average"`
		Storm         struct {
			Registered, Online int
			Memory             struct {
				Ends       string
				OnlineHeap float64 `json:"online_heap_bytes_per_peer"`
			}
			Fleet        struct{ Welcomed int }
			CPUPerPeer   float64 `json:"cpu_per_peer_ms"`
			FleetCPUPeer float64 `json:"fleet_cpu_per_peer_ms"`
		}
		Settings struct {
			Peers           int
			ReceivedSeconds float64 `json:"received_seconds"`
			GoalRatio       float64 `json:"goal_ratio"`
		}
	}
	home := t.TempDir()
	ok(t, home, &res, "sim", "scale", "--peers", "40", "--fleets", "2", "--quic-peers", "10", "--workload", "storm,settings", "--dir", t.TempDir(), "--json")
	if len(res.FleetProcesses) != 3 || res.FleetProcesses[0].Peers != 15 || res.FleetProcesses[2].Transport != "quic" ||
		!strings.Contains(res.FleetNote, "3 fleet processes") || res.OpenFileLimit <= 0 || res.LoadAverage == "" {
		t.Fatalf("fleet: %+v", res)
	}
	if res.Storm.Registered != 40 || res.Storm.Online != 40 || res.Storm.Fleet.Welcomed != 40 || res.Storm.Memory.Ends != "coordinator" || res.Storm.Memory.OnlineHeap <= 0 ||
		res.Storm.CPUPerPeer <= 0 || res.Storm.FleetCPUPeer <= 0 {
		t.Fatalf("storm: %+v", res.Storm)
	}
	if s := res.Settings; s.Peers != 40 || s.ReceivedSeconds <= 0 || s.GoalRatio <= 0 {
		t.Fatalf("settings: %+v", s)
	}

	r := jm(t, home, "sim", "scale", "--peers", "5", "--fleets", "1", "--workload", "storm")
	if r.code != 0 || !strings.Contains(r.stdout, "5 / 5") || !strings.Contains(r.stdout, "the coordinator's alone") ||
		!strings.Contains(r.stderr, "fleet: 5 peers in 1 fleet processes") {
		t.Fatalf("human output: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = jm(t, home, "sim", "scale", "--peers", "5", "--workload", "storm")
	if r.code != 0 || !strings.Contains(r.stdout, "fleet: in this process") || !strings.Contains(r.stdout, "both ends") {
		t.Fatalf("in this process: exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestSimScaleFleetFlagsAndTheHiddenCommand: bad --fleets / --quic-peers
// are usage errors, and `jumpmesh sim fleet` run by hand (a local user)
// refuses without building anything.
func TestSimScaleFleetFlagsAndTheHiddenCommand(t *testing.T) {
	home := t.TempDir()
	for _, args := range [][]string{
		{"--fleets", "-1"},
		{"--timeout", "-1s"},
		{"--peers", "10", "--quic-peers", "11"},
		{"--quic-peers", "-3"},
		{"--fleets", "0", "--quic-peers", "5"},
		{"--peers", "3", "--fleets", "4"},
		{"--coordinators", "1", "--fleets", "2"},
	} {
		r := jm(t, home, append([]string{"sim", "scale", "--workload", "storm"}, args...)...)
		if r.code != exitUsage || r.stderr == "" {
			t.Errorf("sim scale %v: exit %d, stderr %q; want a usage error", args, r.code, r.stderr)
		}
	}
	r := jm(t, home, "sim", "fleet")
	if r.code != exitUsage || !strings.Contains(r.stderr, "jumpmesh sim scale starts") {
		t.Fatalf("sim fleet by hand: exit %d, %q", r.code, r.stderr)
	}
	if r := jm(t, home, "sim", "--help"); strings.Contains(r.stdout, "fleet") {
		t.Fatalf("the hidden command is listed:\n%s", r.stdout)
	}
}
