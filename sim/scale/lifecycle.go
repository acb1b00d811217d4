package scale

import (
	"context"
	"errors"
	"fmt"
	"time"

	lpeer "github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/coordinator"
)

// States counts the fleet's peers by the status the administrator sees.
// Deleted peers are gone from the coordinator (the sweep forgot them).
type States struct {
	Online  int `json:"online"`
	Offline int `json:"offline"`
	Lost    int `json:"lost"`
	Deleted int `json:"deleted"`
	// Other are uninstalled or disabled peers (none in these workloads).
	Other int `json:"other"`
}

// LifecycleStep is the fleet at one point of the injected clock, after a
// sweep there.
type LifecycleStep struct {
	Name string `json:"name"`
	// After is how long the peers have been offline, on the injected clock.
	After   string  `json:"after"`
	Hours   float64 `json:"after_hours"`
	States  States  `json:"states"`
	Swept   int     `json:"swept"` // peers the sweep deleted
	SweepMs float64 `json:"sweep_ms"`
}

// LifecycleResult walks the stopped fleet through the horizons.
type LifecycleResult struct {
	Peers           int `json:"peers"`
	LostAfterDays   int `json:"lost_after_days"`
	DeleteAfterDays int `json:"delete_after_days"`
	// OfflineSeconds is how long the coordinator took to see every stopped
	// peer offline (wall clock).
	OfflineSeconds float64         `json:"offline_seconds"`
	Steps          []LifecycleStep `json:"steps"`
}

// Lifecycle stops the fleet, waits until the coordinator has every peer
// offline, then moves the injected clock to just before and at the site's
// lost and delete horizons, sweeping and counting at each step. The peers
// end deleted; the engine has no peers online afterwards.
func (e *Engine) Lifecycle(ctx context.Context) (*LifecycleResult, error) {
	if e.storm == nil || e.fleetDone {
		return nil, errors.New("the lifecycle needs the storm's peers")
	}
	st, err := e.Site.Settings(ctx)
	if err != nil {
		return nil, err
	}
	lost, del := days(st.GetLostAfterDays()), days(st.GetDeleteAfterDays())
	ids, err := e.fleet.peerIDs()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	if err := e.fleet.Close(); err != nil {
		return nil, fmt.Errorf("stopping the fleet: %w", err)
	}
	e.fleetDone = true
	wctx, cancel := e.wait(ctx)
	defer cancel()
	if err := e.Site.WaitOnline(wctx, 0); err != nil {
		return nil, fmt.Errorf("stopping the fleet: %w", err)
	}
	r := &LifecycleResult{Peers: len(ids), LostAfterDays: int(st.GetLostAfterDays()), DeleteAfterDays: int(st.GetDeleteAfterDays()),
		OfflineSeconds: time.Since(start).Seconds()}
	t0 := e.Site.Clock.Now()
	for _, step := range []struct {
		name  string
		after time.Duration
	}{
		{"stopped", 0},
		{"before lost", lost - time.Minute},
		{"lost horizon", lost},
		{"before delete", del - time.Minute},
		{"delete horizon", del},
	} {
		e.Site.Clock.Set(t0.Add(step.after))
		sweepStart := time.Now()
		swept := e.Site.Coord.Service().Sweep(e.Site.Clock.Now())
		took := time.Since(sweepStart)
		states, err := e.states(ctx, ids)
		if err != nil {
			return nil, err
		}
		r.Steps = append(r.Steps, LifecycleStep{Name: step.name, After: formatAge(step.after), Hours: step.after.Hours(),
			States: states, Swept: swept, SweepMs: ms(took)})
	}
	return r, nil
}

// states counts ids by status.
func (e *Engine) states(ctx context.Context, ids []lpeer.ID) (States, error) {
	views, err := e.Site.Peers(ctx, "")
	if err != nil {
		return States{}, err
	}
	status := make(map[lpeer.ID]string, len(views))
	for _, v := range views {
		status[lpeer.ID(v.GetPeer().GetId())] = v.GetStatus()
	}
	var s States
	for _, id := range ids {
		switch st, ok := status[id]; {
		case !ok || st == coordinator.StatusDeleted:
			s.Deleted++
		case st == coordinator.StatusOnline:
			s.Online++
		case st == coordinator.StatusOffline:
			s.Offline++
		case st == coordinator.StatusLost:
			s.Lost++
		default:
			s.Other++
		}
	}
	return s, nil
}

func days(n uint32) time.Duration { return time.Duration(n) * 24 * time.Hour }

// formatAge prints d in days, hours and minutes ("29d 23h 59m", "180d").
func formatAge(d time.Duration) string {
	if d == 0 {
		return "0"
	}
	dd, h, m := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour), int(d%time.Hour/time.Minute)
	out := ""
	for _, p := range []struct {
		v    int
		unit string
	}{{dd, "d"}, {h, "h"}, {m, "m"}} {
		if p.v != 0 {
			if out != "" {
				out += " "
			}
			out += fmt.Sprint(p.v, p.unit)
		}
	}
	return out
}
