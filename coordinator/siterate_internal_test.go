package coordinator

import (
	"fmt"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/coordinator/etcdtest"
)

// The connection rate is the site's: three members on one etcd admit a
// third of it each (a token bucket of their share a second, one second's
// burst); when one leaves, the other two take half each.
func TestConnectionRateIsSiteWide(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	prefix := "/jumpmesh/" + t.Name() + "/"
	now := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC)
	var svcs []*Service
	var stores []*Store
	for _, name := range []string{"a", "b", "c"} {
		cfg := testEtcdConfig(srv, prefix)
		cfg.Instance = name
		st, err := OpenEtcdStore(cfg)
		if err != nil {
			t.Fatal(err)
		}
		st.instance = name
		t.Cleanup(func() { st.Close() })
		svc := serviceOver(t, st, now)
		svc.admissionRate = 90
		svcs, stores = append(svcs, svc), append(stores, st)
	}
	eventually(t, 10*time.Second, "three members seen by each", func() bool {
		return svcs[0].liveMembers() == 3 && svcs[1].liveMembers() == 3 && svcs[2].liveMembers() == 3
	})
	// admitted counts the hellos of n new peers at one instant that svc
	// lets in at once (the others are told to retry at booked turns).
	round := 0
	admitted := func(svc *Service, at time.Time, n int) int {
		round++
		in := 0
		for i := range n {
			if svc.admitAt(peer.ID(fmt.Sprintf("r%d-p%d", round, i)), at) == 0 {
				in++
			}
		}
		return in
	}
	sum := 0
	for i, svc := range svcs {
		in := admitted(svc, now, 100)
		if in != 30 || svc.limiter.Limit() != 30 {
			t.Errorf("member %d of 3 admitted %d at once at %v a second, want 30 at 30", i, in, svc.limiter.Limit())
		}
		sum += in
	}
	if sum > 90 {
		t.Errorf("the site admitted %d at once, above connection-rate's second (90)", sum)
	}
	// c stops (its member key goes with its lease): a and b take 45 each,
	// from their next hello on.
	if err := stores[2].Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "two members seen by a and b", func() bool {
		return svcs[0].liveMembers() == 2 && svcs[1].liveMembers() == 2
	})
	later := now.Add(time.Minute)
	for i, svc := range svcs[:2] {
		admitted(svc, later, 1)
		if in := admitted(svc, later.Add(time.Minute), 100); in != 45 || svc.limiter.Limit() != 45 {
			t.Errorf("member %d of 2 admitted %d at once at %v a second, want 45 at 45", i, in, svc.limiter.Limit())
		}
	}
}
