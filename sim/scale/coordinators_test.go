package scale

import (
	"context"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator/etcdtest"
)

// TestCoordinators runs the several-coordinators comparison small: a
// storm against one coordinator on Badger, then one and two coordinators
// of one site on a real etcd (in this process), each fleet part pinned to
// its coordinator, and the store operations on both backends.
func TestCoordinators(t *testing.T) {
	t.Parallel() // a site of its own, mostly waiting (scale_test.go)
	if testing.Short() {
		t.Skip("starts etcd and several coordinators")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	res, err := Coordinators(ctx, CoordinatorsConfig{Dir: t.TempDir(), Etcd: "etcd://" + srv.Endpoint, Peers: 20, Counts: []int{1, 2}, Ops: 5, Rounds: 2})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 3 || res.Runs[0].Store != "badger" || res.Runs[2].Coordinators != 2 {
		t.Fatalf("runs %+v", res.Runs)
	}
	for _, r := range res.Runs {
		t.Logf("%s × %d: %.0f peers/s (%.2f × Badger), CPU %.2f ms a registration, held %v, online %v, fleet %+v", r.Store, r.Coordinators, r.PeersPerSecond,
			r.RatioToBadger, r.CPUPerRegistrationMs, r.Held, r.Online, r.Fleet)
		sum := 0
		for i, n := range r.Held {
			sum += n
			// Each coordinator holds its part, and sees at least it online.
			if n == 0 || i >= len(r.Online) || r.Online[i] < n {
				t.Errorf("%s × %d: held %v, online %v", r.Store, r.Coordinators, r.Held, r.Online)
			}
		}
		if sum != 20 || r.PeersPerSecond <= 0 || r.Fleet.GaveUp != 0 || len(r.RoundsPerSecond) != 2 {
			t.Errorf("%s × %d: %+v", r.Store, r.Coordinators, r)
		}
	}
	if len(res.Ops) != 3 {
		t.Fatalf("ops %+v", res.Ops)
	}
	for _, o := range res.Ops {
		t.Logf("%s: Badger p50 %.2f ms, etcd p50 %.2f ms (%.1f ×)", o.Op, o.Badger.P50, o.Etcd.P50, o.RatioP50)
		if o.Badger.Count != 5 || o.Etcd.Count != 5 || o.RatioP50 <= 0 {
			t.Errorf("%+v", o)
		}
	}
	if res.Note == "" || res.LoadAverage == "" {
		t.Errorf("note %q, load %q", res.Note, res.LoadAverage)
	}
}
