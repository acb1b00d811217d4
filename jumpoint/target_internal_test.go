package jumpoint

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestAwaitTargetWaitsForThePeersAddress: a granted target the jumpoint
// does not know yet (the peer's identify came after its grant) is judged
// again until it is known; one that never shows is refused after the
// wait, with the rule's own error; another verdict ends the wait at once.
func TestAwaitTargetWaitsForThePeersAddress(t *testing.T) {
	refused := errors.New("not an address the peer listens on")
	calls := 0
	judge := func() (string, error) {
		calls++
		if calls < 4 {
			return ReasonGrantTarget, refused
		}
		return "", nil
	}
	if reason, err := awaitTarget(context.Background(), judge, 10*time.Second, time.Millisecond); reason != "" || err != nil {
		t.Fatalf("once the address is known: %q, %v", reason, err)
	}

	t0 := time.Now()
	never := func() (string, error) { return ReasonGrantTarget, refused }
	const wait = 200 * time.Millisecond
	if reason, err := awaitTarget(context.Background(), never, wait, 10*time.Millisecond); reason != ReasonGrantTarget || !errors.Is(err, refused) {
		t.Fatalf("an address never known: %q, %v", reason, err)
	}
	if took := time.Since(t0); took < wait {
		t.Fatalf("refused after %v, before the wait (%v)", took, wait)
	}

	other := func() (string, error) { return ReasonGrantInvalid, refused }
	t0 = time.Now()
	if reason, _ := awaitTarget(context.Background(), other, 10*time.Second, time.Millisecond); reason != ReasonGrantInvalid {
		t.Fatalf("another refusal: %q", reason)
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Fatalf("another refusal waited %v", took)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if reason, _ := awaitTarget(ctx, never, 10*time.Second, time.Second); reason != ReasonGrantTarget {
		t.Fatalf("a closing jumpoint: %q", reason)
	}
}
