package scale_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/sim/scale"
)

// BenchmarkSettingsSet is one `settings set` as the coordinator serves it
// (its control service, called in this process: the fleet shares the
// process, and its 4,000 connections waking up would delay a console's
// reply here, not on a real network), with N fleet peers online. ns/op is
// the administrator's wait but the network round trip; until-written is
// until the update was written to every peer's stream (each peer's send
// queue does that after the answer: coordinator/push.go).
func BenchmarkSettingsSet(b *testing.B) {
	for _, n := range []int{100, 1000, 4000} {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
			defer cancel()
			site, err := scale.NewSite(ctx, scale.SiteConfig{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer site.Close()
			fleet, err := scale.NewFleet(scale.FleetConfig{Key: site.Key, Peers: n, Transport: "tcp"})
			if err != nil {
				b.Fatal(err)
			}
			defer fleet.Close()
			fleet.Start(0)
			if _, err := fleet.Wait(ctx); err != nil {
				b.Fatal(err)
			}
			if err := site.WaitOnline(ctx, n); err != nil {
				b.Fatal(err)
			}
			i := 0
			var written time.Duration
			for b.Loop() {
				i++
				start := time.Now()
				set := &pb.SettingsSetRequest{Values: map[string]string{"stats-interval": fmt.Sprintf("%ds", 60+i%2)}}
				if _, err := site.Do(ctx, &pb.Request{Body: &pb.Request_SettingsSet{SettingsSet: set}}); err != nil {
					b.Fatal(err)
				}
				// Not timed: until the update is written to every peer's
				// stream, so each set starts on a quiet coordinator.
				b.StopTimer()
				if err := untilWritten(ctx, site); err != nil {
					b.Fatal(err)
				}
				written += time.Since(start)
				b.StartTimer()
			}
			b.ReportMetric(float64(written.Milliseconds())/float64(i), "ms-until-written/op")
		})
	}
}

// untilWritten polls, bounded by ctx, until the coordinator has no push in
// flight.
func untilWritten(ctx context.Context, site *scale.Site) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for site.Coord.Service().Pushing() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("pushes still in flight: %w", ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}
