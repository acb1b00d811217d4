package relay

import (
	"testing"
	"time"
)

// TestGatherDelay: a loop reading below spliceGatherRate never gathers;
// above it, it sleeps as long as spliceGatherFrames reads take to come,
// within spliceGatherMin and the bound spliceGather.
func TestGatherDelay(t *testing.T) {
	for _, c := range []struct {
		rate float64
		want time.Duration
	}{
		{0, 0},
		{spliceGatherRate - 1, 0},
		{spliceGatherRate, spliceGather}, // 16 ms at 2,000 a second: the bound
		{15000, spliceGather},            // 2.13 ms: the bound
		{32000, time.Millisecond},        // exactly 32 reads' time
		{64000, 500 * time.Microsecond},  // a faster stream gathers shorter
		{1e6, spliceGatherMin},           // and no shorter than the floor
		{1e9, spliceGatherMin},           // whatever the rate
	} {
		if got := gatherDelay(c.rate); got != c.want {
			t.Errorf("gatherDelay(%.0f) = %s, want %s", c.rate, got, c.want)
		}
	}
	defer func(d time.Duration) { spliceGather = d }(spliceGather)
	spliceGather = 0
	if got := gatherDelay(1e5); got != 0 {
		t.Errorf("gathering off: gatherDelay = %s, want 0", got)
	}
}
