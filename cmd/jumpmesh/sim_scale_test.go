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
