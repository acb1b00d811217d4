package relay_test

import (
	"testing"
	"time"

	pbv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/pb"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/relay"
)

// TestNewMemberServedAtOnce: with a refresh period of an hour, a peer and a
// technician enrolled after the relay started reserve and connect at once:
// the unknown party's request waits for an early refresh instead of being
// refused until the next period. A stranger is still refused, with
// PERMISSION_DENIED (its connection is not cut), after that wait.
func TestNewMemberServedAtOnce(t *testing.T) {
	site := coordinatortest.New(t, console.Login)
	cfg := relayConfig(t, site, "relay-1")
	cfg.Refresh = time.Hour
	r := runRelay(t, cfg)
	ri := relayInfo(t, r.Addrs())
	ctx := site.Ctx()

	bob := member(t, site, "bob") // enrolled after the relay's first fetch
	if err := reserve(ctx, bob, ri); err != nil {
		t.Fatalf("a new member's reservation: %v", err)
	}
	alice := member(t, site, "alice")
	if err := dialCircuit(ctx, alice, ri, bob.ID()); err != nil {
		t.Fatalf("a new member's connect: %v", err)
	}
	eve := stranger(t)
	start := time.Now()
	if err := reserve(ctx, eve, ri); !isStatus(err, pbv2.Status_PERMISSION_DENIED) {
		t.Fatalf("stranger reservation: got %v, want PERMISSION_DENIED", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the stranger was held %v", took)
	}
	if n := refusals(t, r, relay.ReasonReserveNotMember); n != 1 {
		t.Fatalf("refusals = %v, want 1 (the members were not refused)", n)
	}
}
