package coordinator

import (
	"strings"
	"testing"
	"time"
)

// TestAcceptQueueAdvice: a site whose active peers fit the kernel's accept
// queue and the gate's waiting room gets no warning; one that does not is
// told the sysctl to run, with a bound at least twice its active peers.
func TestAcceptQueueAdvice(t *testing.T) {
	for _, c := range []struct {
		active, somaxconn, room int
		want                    string
	}{
		{active: 0, somaxconn: 4096, room: gateRoomMin},
		{active: 4096 + gateRoomMin, somaxconn: 4096, room: gateRoomMin},
		{active: 6000, somaxconn: 0, room: gateRoomMin}, // unknown bound: nothing said
		{active: 4097 + gateRoomMin, somaxconn: 4096, room: gateRoomMin, want: "net.core.somaxconn=16384 net.ipv4.tcp_max_syn_backlog=16384"},
		{active: 4097 + 100, somaxconn: 4096, room: 100, want: "net.core.somaxconn=16384"}, // a small MaxHandshakes
		{active: 20000, somaxconn: 4096, room: gateRoomMin, want: "net.core.somaxconn=65536"},
		{active: 1300, somaxconn: 128, room: gateRoomMin, want: "net.core.somaxconn=4096"},
	} {
		got := acceptQueueAdvice(c.active, c.somaxconn, c.room)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%d active peers, somaxconn %d, room %d: %q, want %q", c.active, c.somaxconn, c.room, got, c.want)
		}
	}
	// The room a coordinator tells it is the gate's least, within its
	// MaxHandshakes.
	if got := newHandshakeGate(nil, 2048, time.Second).stats().RoomCap; got != gateRoomMin {
		t.Errorf("the default gate's room %d, want %d", got, gateRoomMin)
	}
	if got := newHandshakeGate(nil, 200, time.Second).stats().RoomCap; got != 200-gateTransientSpare {
		t.Errorf("a small gate's room %d, want %d", got, 200-gateTransientSpare)
	}
}
