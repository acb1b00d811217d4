package peer_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
)

// TestPeersSpreadWhenACoordinatorJoins (issue 16 part 2): 24 peers online
// through coordinator a, the only one; b joins (as after a rolling
// restart, where the member restarted last holds nobody). a, above its
// share (12) by more than the slack (4), moves peers to b a few a round
// (PeerMove: each peer dials b's addresses) until it holds at most 16:
// b ends with at least 8, and every peer stays online.
func TestPeersSpreadWhenACoordinatorJoins(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (harness_test.go)
	const n = 24
	s := newHASiteWith(t, coordinator.Resources{RebalanceEvery: 300 * time.Millisecond}, "a")
	key := s.installerNaming("a")
	hosts := make([]*host, n)
	for i := range hosts {
		hosts[i] = openWall(t, installWall(t, key, fmt.Sprintf("spread-%02d", i)))
		hosts[i].runWall()
	}
	held := func() map[string]int {
		out := map[string]int{}
		for _, h := range hosts {
			out[s.heldBy(h.d)]++
		}
		return out
	}
	coordinatortest.Eventually(t, 60*time.Second, "every peer online through a", func() bool { return held()["a"] == n })

	start := time.Now()
	s.start("b")
	var got map[string]int
	coordinatortest.Eventually(t, 60*time.Second, "the peers spread over a and b", func() bool {
		got = held()
		return got["a"]+got["b"] == n && got["b"] >= n/2-4 && got["a"] <= n/2+4
	})
	t.Logf("%d peers through a, %d through b %s after b started (load %s)", got["a"], got["b"],
		time.Since(start).Round(time.Millisecond), loadAverage())
}
