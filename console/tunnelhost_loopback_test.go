package console

import (
	"maps"
	"slices"
	"testing"
)

// TestDropLoopback: a peer's loopback addresses are no tunnel targets
// when it has others (the jumpoint would refuse and count each); a peer
// reachable only on loopback (a jumpoint on its own host) keeps them.
func TestDropLoopback(t *testing.T) {
	for _, c := range []struct{ in, want []string }{
		{[]string{"127.0.0.1:4001", "10.20.0.5:4001", "[::1]:4001"}, []string{"10.20.0.5:4001"}},
		{[]string{"127.0.0.1:4001", "[::1]:4001"}, []string{"127.0.0.1:4001", "[::1]:4001"}},
		{[]string{"10.20.0.5:4001"}, []string{"10.20.0.5:4001"}},
	} {
		m := map[string]bool{}
		for _, a := range c.in {
			m[a] = true
		}
		dropLoopback(m)
		if got := slices.Sorted(maps.Keys(m)); !slices.Equal(got, c.want) {
			t.Errorf("dropLoopback(%q) left %q, want %q", c.in, got, c.want)
		}
	}
}
