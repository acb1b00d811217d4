package coordinator

import (
	"strings"
	"testing"
)

// TestAcceptQueueAdvice: a site whose active peers fit the kernel's accept
// queue and the gate's waiting room gets no warning; one that does not is
// told the sysctl to run, with a bound at least twice its active peers.
func TestAcceptQueueAdvice(t *testing.T) {
	for _, c := range []struct {
		active, somaxconn int
		want              string
	}{
		{active: 0, somaxconn: 4096},
		{active: 4096 + gateRoomMin, somaxconn: 4096},
		{active: 6000, somaxconn: 0}, // unknown bound: nothing said
		{active: 4097 + gateRoomMin, somaxconn: 4096, want: "net.core.somaxconn=16384 net.ipv4.tcp_max_syn_backlog=16384"},
		{active: 20000, somaxconn: 4096, want: "net.core.somaxconn=65536"},
		{active: 1300, somaxconn: 128, want: "net.core.somaxconn=4096"},
	} {
		got := acceptQueueAdvice(c.active, c.somaxconn)
		if c.want == "" && got != "" || c.want != "" && !strings.Contains(got, c.want) {
			t.Errorf("%d active peers, somaxconn %d: %q, want %q", c.active, c.somaxconn, got, c.want)
		}
	}
}
