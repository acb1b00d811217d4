package scale

import (
	"errors"
	"strings"
	"testing"
)

// TestPlanFleet: where the peers run on a machine whose open-file limit is
// 20,000 (the test VM's hard limit).
func TestPlanFleet(t *testing.T) {
	const limit = 20_000
	cmd := []string{"jumpmesh", "sim", "fleet"}
	for _, tc := range []struct {
		name  string
		cfg   Config
		parts []FleetPart
		err   string
	}{
		{"fits in this process", Config{Peers: 3000, FleetCommand: cmd}, nil, ""},
		{"kept in this process as asked", Config{Peers: 20_000, Fleets: InProcess}, nil, ""},
		{"one fleet process", Config{Peers: 4000, FleetCommand: cmd}, []FleetPart{{4000, "tcp"}}, ""},
		// As BenchmarkOnlinePeerMemory: two TCP fleets, and the peers the
		// coordinator's limit cannot hold over TCP on QUIC.
		{"20,000", Config{Peers: 20_000, FleetCommand: cmd}, []FleetPart{{9744, "tcp"}, {9744, "tcp"}, {512, "quic"}}, ""},
		{"asked for", Config{Peers: 40, Fleets: 2, QUICPeers: 10, FleetCommand: cmd}, []FleetPart{{15, "tcp"}, {15, "tcp"}, {10, "quic"}}, ""},
		{"all over QUIC", Config{Peers: 30_000, Transport: "quic", FleetCommand: cmd}, []FleetPart{{7500, "quic"}, {7500, "quic"}, {7500, "quic"}, {7500, "quic"}}, ""},
		{"key's addresses", Config{Peers: 10, Fleets: 1, Transport: "all", FleetCommand: cmd}, []FleetPart{{10, "all"}}, ""},
		{"no command", Config{Peers: 20_000}, nil, "no command to run fleet processes"},
		{"too few processes", Config{Peers: 20_000, Fleets: 1, FleetCommand: cmd}, nil, "want at least 2 processes"},
		{"more processes than peers", Config{Peers: 3, Fleets: 4, FleetCommand: cmd}, nil, "4 fleet processes for 3 peers"},
		{"behind a jumpoint", Config{Peers: 7000, Jumpoint: true, FleetCommand: cmd}, nil, "behind a jumpoint"},
		{"bad count", Config{Peers: 10, Fleets: -2, FleetCommand: cmd}, nil, "fleets -2"},
		{"none over QUIC", Config{Peers: 4000, QUICPeers: NoQUIC, FleetCommand: cmd}, []FleetPart{{4000, "tcp"}}, ""},
		{"none over QUIC past the limit", Config{Peers: 20_000, QUICPeers: NoQUIC, FleetCommand: cmd}, nil, "raise it (ulimit -n) or let QUIC carry the rest"},
	} {
		plan, err := planFleet(tc.cfg, limit)
		if tc.err != "" {
			if !errors.Is(err, ErrFleetPlan) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want an error saying %q", tc.name, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if len(plan.Parts) != len(tc.parts) {
			t.Errorf("%s: %+v, want %+v", tc.name, plan.Parts, tc.parts)
			continue
		}
		for i := range tc.parts {
			if plan.Parts[i] != tc.parts[i] {
				t.Errorf("%s: %+v, want %+v", tc.name, plan.Parts, tc.parts)
				break
			}
		}
		if len(tc.parts) > 0 && !strings.Contains(plan.Note, "fleet processes") {
			t.Errorf("%s: note %q", tc.name, plan.Note)
		}
	}
}
