package coordinator

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestStatusClockAgreesWithSub: a statusClock (the lost horizon
// subtracted from now once) gives every peer the status now.Sub(lastSeen)
// >= the horizon gave, for times with and without a monotonic reading, at
// the horizon to the nanosecond, far in the past or future, and for
// horizons up to what a setting can hold (those past a Duration wrap as
// they always did).
func TestStatusClockAgreesWithSub(t *testing.T) {
	lostBySub := func(f slotFlags, lastSeen time.Time, st *pb.Settings, now time.Time) string {
		online := f&slotOnline != 0
		switch {
		case f&slotDeleted != 0:
			return StatusDeleted
		case f&slotUninstalled != 0:
			return StatusUninstalled
		case online && f&slotDisabled != 0:
			return StatusDisabled
		case online:
			return StatusOnline
		case now.Sub(lastSeen) >= days(st.GetLostAfterDays()):
			return StatusLost
		case f&slotPassive != 0:
			return StatusPassive
		}
		return StatusOffline
	}
	rng := rand.New(rand.NewPCG(3, 4))
	mono := time.Now() // carries a monotonic reading
	wall := mono.Round(0)
	nows := []time.Time{mono, wall, mono.Add(time.Hour), time.Unix(0, 0), time.Time{}}
	horizons := []uint32{0, 1, 30, 365, statusCutDays, statusCutDays + 1, 106751, 106752, 1 << 31, ^uint32(0)}
	for _, now := range nows {
		for _, d := range horizons {
			st := &pb.Settings{LostAfterDays: d}
			c := newStatusClock(st, now)
			h := days(d)
			seen := []time.Time{time.Time{}, now, now.Add(-h), now.Add(-h + 1), now.Add(-h - 1), now.Add(h), now.Round(0).Add(-h),
				now.Round(0).Add(-h + 1), time.Unix(1<<40, 0), time.Unix(-1<<40, 0)}
			for range 50 {
				seen = append(seen, now.Add(-time.Duration(rng.Int64N(int64(400*24*time.Hour)))+time.Duration(rng.Int64N(int64(time.Hour)))))
			}
			for _, ls := range seen {
				for f := slotFlags(0); f < slotOnline<<1; f++ {
					if got, want := c.of(f, ls), lostBySub(f, ls, st, now); got != want {
						t.Fatalf("lost after %d days, now %v, last seen %v, flags %b: %s, Sub says %s", d, now, ls, f, got, want)
					}
				}
			}
		}
	}
}
