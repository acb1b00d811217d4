package scale

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// SettingsGoal is issue 16's bound on a settings change reaching every
// online peer (at 20,000 peers).
const SettingsGoal = 10 * time.Second

// SettingsResult is one settings change pushed to every online peer
// (coordinator/push.go's send queue).
type SettingsResult struct {
	Peers int `json:"peers"`
	// AdminMs is the administrator's wait for `settings set` (through the
	// control service in this process: no network round trip), its synced
	// store write included; the pushes happen after it.
	AdminMs float64 `json:"admin_ms"`
	// WrittenSeconds is until the update was written to every online
	// peer's stream; ReceivedSeconds until every peer had read it.
	WrittenSeconds  float64 `json:"written_seconds"`
	ReceivedSeconds float64 `json:"received_seconds"`
	// GoalRatio is ReceivedSeconds over SettingsGoal (met at ≤ 1; the goal
	// is for 20,000 peers).
	GoalRatio float64 `json:"goal_ratio"`
	// SlowPeers were disconnected for not taking the update.
	SlowPeers int64 `json:"slow_peers"`
}

// Settings changes a setting every online peer keeps (the statistics
// interval, 60 s to 61 s or back) as the administrator, with the storm's
// peers online, and times the administrator's wait, the writes and the
// peers' reading of the update.
func (e *Engine) Settings(ctx context.Context) (*SettingsResult, error) {
	if e.storm == nil || e.fleetDone {
		return nil, errors.New("the settings push needs the storm's peers online")
	}
	n := e.cfg.peers()
	wctx, cancel := e.wait(ctx)
	defer cancel()
	if err := e.Site.WaitOnline(wctx, n); err != nil {
		return nil, err
	}
	st, err := e.Site.Settings(ctx)
	if err != nil {
		return nil, err
	}
	interval := "61s"
	if st.GetStatsIntervalSeconds() == 61 {
		interval = "60s"
	}
	before := e.fleet.Totals().Updates
	slow := e.Site.Coord.Service().SlowPeers()
	set := &pb.SettingsSetRequest{Values: map[string]string{"stats-interval": interval}}
	start := time.Now()
	if _, err := e.Site.Do(ctx, &pb.Request{Body: &pb.Request_SettingsSet{SettingsSet: set}}); err != nil {
		return nil, fmt.Errorf("settings set: %w", err)
	}
	r := &SettingsResult{Peers: n, AdminMs: ms(time.Since(start))}
	svc := e.Site.Coord.Service()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for svc.Pushing() > 0 {
		select {
		case <-wctx.Done():
			return nil, fmt.Errorf("%d peers still had the update queued: %w", svc.Pushing(), context.Cause(wctx))
		case <-tick.C:
		}
	}
	r.WrittenSeconds = time.Since(start).Seconds()
	received := func() int64 { return e.fleet.Totals().Updates - before }
	if err := poll(wctx, func() bool { return received() >= int64(n) }, func() string {
		return fmt.Sprintf("%d of %d peers read the update", received(), n)
	}); err != nil {
		return nil, err
	}
	r.ReceivedSeconds = time.Since(start).Seconds()
	r.GoalRatio = r.ReceivedSeconds / SettingsGoal.Seconds()
	r.SlowPeers = svc.SlowPeers() - slow
	return r, nil
}
