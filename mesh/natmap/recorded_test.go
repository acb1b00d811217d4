package natmap_test

import (
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/natmap"
)

// recording is a mapping sequence recorded in the lab by sim/netlab's
// TestMappingSequences: one socket behind a NAT preset writing to 16
// destinations in turn, and the external port each saw.
type recording struct {
	Preset    string     `json:"preset"`
	Proto     string     `json:"proto"`
	LocalPort uint16     `json:"local_port"`
	Public    netip.Addr `json:"public"`
	Seen      []struct {
		Dest netip.AddrPort `json:"dest"`
		Port uint16         `json:"port"`
	} `json:"seen"`
}

func loadRecordings(t *testing.T) map[string]recording {
	t.Helper()
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no recordings in testdata (%v)", err)
	}
	out := map[string]recording{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var r recording
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(r.Seen) < 4 {
			t.Fatalf("%s: %d observations, want at least 4", f, len(r.Seen))
		}
		out[r.Preset+"-"+r.Proto] = r
	}
	for _, want := range []string{"easy-udp", "easy-tcp", "hard-udp", "hard-tcp", "sequential-udp", "sequential-tcp", "sequential-shared-udp"} {
		if _, ok := out[want]; !ok {
			t.Fatalf("no recording %s in testdata", want)
		}
	}
	return out
}

func (r recording) observations() []natmap.Observation {
	var obs []natmap.Observation
	for _, s := range r.Seen {
		obs = append(obs, natmap.Observation{Dest: s.Dest, Mapped: netip.AddrPortFrom(r.Public, s.Port)})
	}
	return obs
}

// TestRecordedSequences classifies every prefix of each recorded sequence
// (two flows and up) and predicts the flow that followed it: easy's port is
// the one port predicted; sequential's (alone behind its NAT, or taking
// turns with another host) is the first candidate; hard is random from
// three flows on and gets no prediction.
func TestRecordedSequences(t *testing.T) {
	for name, r := range loadRecordings(t) {
		t.Run(name, func(t *testing.T) {
			obs := r.observations()
			for k := 2; k < len(obs); k++ {
				m := natmap.Classify(obs[:k])
				next := obs[k].Mapped.Port()
				got := m.Next(time.Time{}, natmap.MaxCandidates)
				switch r.Preset {
				case "easy":
					if m.Kind != natmap.EndpointIndependent || !slices.Equal(got, []uint16{next}) {
						t.Fatalf("after %d flows: %s, predicted %v, want endpoint-independent and [%d]", k, m.Kind, got, next)
					}
				case "sequential", "sequential-shared":
					if m.Kind != natmap.Sequential || len(got) == 0 || got[0] != next {
						t.Fatalf("after %d flows (%v): %s step %d, predicted %v, want sequential and %d first",
							k, r.Seen[:k], m.Kind, m.Step, got, next)
					}
				case "hard":
					if k >= 3 && (m.Kind != natmap.Random || got != nil || m.Probes(time.Time{}) != nil) {
						t.Fatalf("after %d flows: %s, predicted %v, want random and nothing", k, m.Kind, got)
					}
				default:
					t.Fatalf("recording of unknown preset %q", r.Preset)
				}
			}
		})
	}
}
