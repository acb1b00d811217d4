package main

import (
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/peer"
)

// TestPeerStatusPassiveFields: `peer status` says whether a passive peer
// went passive, where its listener is, why it has none, and what it
// accepted and refused, by reason.
func TestPeerStatusPassiveFields(t *testing.T) {
	since := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		st   peer.Status
		want []string
		not  []string
	}{
		{"active", peer.Status{Connection: "active"}, []string{"connection:", "active"}, []string{"passive", "wake commands"}},
		{"passive, connected", peer.Status{Connection: "passive", PassiveListen: "0.0.0.0:5832"},
			[]string{"passive port:", "listening on 0.0.0.0:5832"}, []string{"wake commands"}},
		{"passive, gone passive", peer.Status{Connection: "passive", Passive: true, PassiveSince: since, PassiveListen: "0.0.0.0:5832",
			PassiveCounters: &peer.PassiveCounters{Accepted: 2, Garbage: 3, Forged: 1, Replayed: 1, Duplicate: 4}},
			[]string{"passive:", "yes, since 2026-12-02 10:00 UTC", "listening on 0.0.0.0:5832",
				"wake commands:", "accepted 2, refused 5 (garbage 3, forged 1, replayed 1)"}, []string{"duplicate"}},
		{"port taken", peer.Status{Connection: "passive", PassiveError: "address already in use"},
			[]string{"cannot listen (address already in use); staying connected"}, nil},
	} {
		var b strings.Builder
		passiveFields(&b, &tc.st)
		for _, w := range tc.want {
			if !strings.Contains(b.String(), w) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, w, b.String())
			}
		}
		for _, n := range tc.not {
			if strings.Contains(b.String(), n) {
				t.Errorf("%s: output has %q:\n%s", tc.name, n, b.String())
			}
		}
	}
}
