package relay

import (
	"testing"

	"github.com/libp2p/go-libp2p/core/network"
	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
)

// TestServiceScopeHoldsMaxCircuits: the relay service's scope grants the
// buffers of MaxCircuits circuits, reserved as go-libp2p reserves them (at
// high priority, which a scope grants only below ~80 % of its limit).
func TestServiceScopeHoldsMaxCircuits(t *testing.T) {
	for _, res := range []Resources{
		{},
		{MaxCircuits: 2},
		{MaxCircuits: 5000, BufferSize: 256 << 10},
	} {
		res = res.withDefaults()
		rm, cm, err := res.managers()
		if err != nil {
			t.Fatal(err)
		}
		err = rm.ViewService(relayv2.ServiceName, func(s network.ServiceScope) error {
			span, err := s.BeginSpan()
			if err != nil {
				return err
			}
			defer span.Done()
			for i := range res.MaxCircuits {
				if err := span.ReserveMemory(2*res.BufferSize, network.ReservationPriorityHigh); err != nil {
					t.Errorf("MaxCircuits %d, buffers of %d B: circuit %d refused: %v", res.MaxCircuits, res.BufferSize, i+1, err)
					return nil
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		cm.Close()
		rm.Close()
	}
}
