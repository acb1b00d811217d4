package coordinator

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
)

// A storm above the rate books turns: each peer told to retry comes back
// at its turn and is admitted without taking another, so N peers at R per
// second are all admitted in N ÷ R with one retry each.
func TestAdmissionTicketsBookTurns(t *testing.T) {
	const rateLimit, n = 10, 50
	s := &Service{admissionRate: rateLimit}
	now := time.Unix(1_000_000, 0)
	turns := map[peer.ID]time.Time{}
	admitted := 0
	for i := range n {
		id := peer.ID(fmt.Sprintf("peer-%d", i))
		if d := s.admitAt(id, now); d == 0 {
			admitted++
		} else {
			turns[id] = now.Add(d)
		}
	}
	if admitted != rateLimit {
		t.Fatalf("%d admitted at once, want the burst of %d", admitted, rateLimit)
	}
	last := now
	for id, at := range turns {
		if at.After(last) {
			last = at
		}
		// Early: told the same turn again, nothing booked anew.
		if d := s.admitAt(id, now.Add(time.Millisecond)); !now.Add(time.Millisecond).Add(d).Equal(at) {
			t.Fatalf("%s came back early and was given %s, want its turn at %s", id, d, at.Sub(now))
		}
	}
	if want := now.Add(time.Duration(n-rateLimit) * time.Second / rateLimit); !last.Equal(want) {
		t.Fatalf("the last turn is at +%s, want +%s (one turn per 1/rate)", last.Sub(now), want.Sub(now))
	}
	// A newcomer at the last turn waits behind the booked ones, no more.
	if d := s.admitAt("newcomer", last); d <= 0 || d > time.Second/rateLimit+time.Millisecond {
		t.Fatalf("a newcomer right after the storm's turns waits %s, want one turn (%s)", d, time.Second/rateLimit)
	}
	// Each comes back at its turn plus jitter, in time order: admitted,
	// without taking a new turn.
	ids := make([]peer.ID, 0, len(turns))
	for id := range turns {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b peer.ID) int { return turns[a].Compare(turns[b]) })
	for _, id := range ids {
		if d := s.admitAt(id, turns[id].Add(500*time.Millisecond)); d != 0 {
			t.Fatalf("%s came back at its turn and was told to wait %s", id, d)
		}
	}
	// Had the returns been charged, the bucket would be booked seconds
	// ahead; it has refilled since the newcomer's turn instead.
	if d := s.admitAt("probe", last.Add(500*time.Millisecond)); d != 0 {
		t.Fatalf("after the returns a peer waits %s: the returns were charged again", d)
	}
}

func TestAdmissionTicketsUnusedAreSwept(t *testing.T) {
	s := &Service{admissionRate: 1}
	now := time.Unix(1_000_000, 0)
	if d := s.admitAt("first", now); d != 0 {
		t.Fatalf("the first peer waits %s", d)
	}
	if d := s.admitAt("gone", now); d == 0 {
		t.Fatal("a second peer at 1/s was admitted at once")
	}
	s.admitAt("sweeper", now.Add(ticketGrace+2*time.Second))
	s.admitMu.Lock()
	_, kept := s.tickets["gone"]
	s.admitMu.Unlock()
	if kept {
		t.Fatal("an unused turn outlived its grace")
	}
}
