package scale_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
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
// queue does that after the answer: coordinator/push.go); until-received
// until every peer has read it.
//
// JM_SCALE_SETTINGS_PEERS lists the fleet sizes (default 100,1000,4000);
// 20000 is issue 16's goal (≤ 10 s until received).
func BenchmarkSettingsSet(b *testing.B) {
	for _, n := range settingsBenchPeers(b) {
		b.Run(fmt.Sprintf("peers=%d", n), func(b *testing.B) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute+time.Duration(n)*20*time.Millisecond)
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
			fleet.Start(startRate(n))
			if _, err := fleet.Wait(ctx); err != nil {
				b.Fatal(err)
			}
			if err := site.WaitOnline(ctx, n); err != nil {
				b.Fatal(err)
			}
			i := 0
			var written, received time.Duration
			for b.Loop() {
				i++
				updates := fleet.Totals().Updates
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
				if err := untilReceived(ctx, fleet, updates+int64(n)); err != nil {
					b.Fatal(err)
				}
				received += time.Since(start)
				b.StartTimer()
			}
			b.ReportMetric(float64(written.Milliseconds())/float64(i), "ms-until-written/op")
			b.ReportMetric(float64(received.Milliseconds())/float64(i), "ms-until-received/op")
			if slow := site.Coord.Service().SlowPeers(); slow > 0 {
				b.Errorf("%d peers disconnected for not taking the update", slow)
			}
			if on := site.Online(); on != n {
				b.Errorf("%d of %d peers online after the sets", on, n)
			}
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

// untilReceived polls, bounded by ctx, until the fleet's peers have read
// want settings updates in all.
func untilReceived(ctx context.Context, fleet *scale.Fleet, want int64) error {
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for fleet.Totals().Updates < want {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d updates received: %w", fleet.Totals().Updates, want, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// settingsBenchPeers reads JM_SCALE_SETTINGS_PEERS (default 100,1000,4000).
func settingsBenchPeers(b *testing.B) []int {
	s := os.Getenv("JM_SCALE_SETTINGS_PEERS")
	if s == "" {
		return []int{100, 1000, 4000}
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			b.Fatalf("JM_SCALE_SETTINGS_PEERS=%q: want positive integers, comma-separated", s)
		}
		out = append(out, n)
	}
	return out
}

// startRate starts fleets of up to 4,000 peers at once, larger ones at
// 200 a second: what is measured is the push to peers online, not a
// registration storm (docs/performance.md, "Coordinator under storms").
func startRate(n int) float64 {
	if n <= 4000 {
		return 0
	}
	return 200
}
