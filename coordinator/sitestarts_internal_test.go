package coordinator

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Session starts in flight are the site's: three coordinators on one etcd,
// max-session-starts 3 and a technician's share 2. The attack: tom asks a
// different coordinator for each grant, and gets his share once, not once
// per coordinator; the site's bound holds across coordinators too. A
// session started on b's peer frees the slot of a grant a issued; a grant
// released through c frees a's slot; slots lapse after StartSlot; a
// coordinator's lease takes its slots with it.
func TestSessionStartsInFlightSiteWide(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	svcs, stores := siteMembers(t, now, nil, "a", "b", "c")
	a, b, c := svcs[0], svcs[1], svcs[2]
	st := &pb.Settings{MaxSessionStarts: 3, MaxSessionStartsPerTechnician: 2}
	n := 0
	reserve := func(svc *Service, user string) ([]byte, error) {
		n++
		nonce := []byte(fmt.Sprintf("nonce-%02d", n))
		return nonce, svc.jumps.reserve(nonce, user, svc.clock.Now(), st, nil)
	}
	must := func(svc *Service, user string) []byte {
		t.Helper()
		nonce, err := reserve(svc, user)
		if err != nil {
			t.Fatalf("%s's grant through %s: %v", user, svc.store.Instance(), err)
		}
		return nonce
	}
	busy := func(svc *Service, user, why string) {
		t.Helper()
		if _, err := reserve(svc, user); catalog.CodeOf(err) != catalog.CodeServerBusy {
			t.Fatalf("%s's grant through %s (%s): %v, want server_busy", user, svc.store.Instance(), why, err)
		}
	}

	tom1 := must(a, "tom")
	tom2 := must(b, "tom")
	busy(c, "tom", "his share is in flight on a and b")
	must(c, "ann")
	busy(a, "sue", "the site's 3 are in flight")

	// tom's first grant (issued by a) used on b's peer: its slot is free.
	p := newPeerID(t)
	b.jumps.started(p, "s1", "tom", tom1)
	t.Cleanup(func() { b.jumps.peerGone(p) })
	must(a, "sue")
	busy(b, "tom", "the site's 3 again")
	// tom's second grant released through c (refused at the peer).
	c.jumps.release(tom2)
	must(c, "tom")

	// StartSlot later, on a's clock, every slot has lapsed.
	a.clock.(*mesh.ManualClock).Advance(StartSlot)
	must(a, "tom")
	must(a, "tom")
	busy(a, "tom", "his share, on a's clock")
	if left := len(recordsUnder(t, stores[0], startsPrefix)); left > 3 {
		t.Fatalf("%d records under %s, want the lapsed ones swept (at most 3 left)", left, startsPrefix)
	}
	// a stops: its lease takes its slots.
	if err := stores[0].Close(); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "a's slots gone with its lease", func() bool {
		return len(recordsUnder(t, stores[1], startsPrefix)) == 0
	})
	b.clock.(*mesh.ManualClock).Advance(StartSlot)
	must(b, "tom")
}

// Coordinators reserving at once never pass the site's bound: eight
// technicians ask three coordinators at the same moment for one grant
// each, with max-session-starts 4. The store's transactions serialize
// them (a conflict runs one again): at most 4 are granted, the others
// are refused (busy, or a conflict lost too often: never a fifth slot).
func TestSessionStartsConcurrentAcrossCoordinators(t *testing.T) {
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	svcs, stores := siteMembers(t, now, nil, "a", "b", "c")
	st := &pb.Settings{MaxSessionStarts: 4, MaxSessionStartsPerTechnician: 1}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			svc := svcs[i%len(svcs)]
			errs[i] = svc.jumps.reserve([]byte{byte(i)}, fmt.Sprintf("tech-%d", i), now, st, nil)
		}()
	}
	wg.Wait()
	granted, busy := 0, 0
	for _, err := range errs {
		switch {
		case err == nil:
			granted++
		case catalog.CodeOf(err) == catalog.CodeServerBusy:
			busy++
		}
	}
	t.Logf("8 at once on 3 coordinators, bound 4: %d granted, %d busy, %d lost their conflicts", granted, busy, len(errs)-granted-busy)
	if granted > 4 || granted == 0 {
		t.Fatalf("%d granted, want 1 to 4: %v", granted, errs)
	}
	if got := len(recordsUnder(t, stores[0], startsPrefix)); got != granted {
		t.Fatalf("%d records in flight, %d granted", got, granted)
	}
}
