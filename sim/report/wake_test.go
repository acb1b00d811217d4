package report

import (
	"strings"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/results"
)

// TestReportWakes: a run with sleeping hosts shows the Wake-on-LAN table:
// who woke each host, how long from the command to the packet on its wire,
// wrong passwords, and a host that stayed asleep; a run without has none.
func TestReportWakes(t *testing.T) {
	res := synthetic()
	packetAt := res.Started.Add(2*time.Second + 42*time.Millisecond)
	cmdAt := res.Started.Add(2 * time.Second)
	res.Wakes = []results.Wake{
		{Host: "peer-a1", Suspended: res.Started.Add(time.Second), Woken: true, Command: "jump --wake peer-a1 -- echo hi",
			CommandAt: &cmdAt, PacketAt: &packetAt, ToPacketMS: 42.3, Packet: "udp 192.168.10.11 → 255.255.255.255:9 for 02:00:00:00:00:01",
			Waker: "peer-a2", Senders: []string{"peer-a2"}, Packets: 5, RestartMS: 180},
		{Host: "peer-a2", Suspended: res.Started.Add(3 * time.Second), SecureOn: true, Senders: []string{"peer-a1"}, Packets: 5, WrongPassword: 5,
			Attempts: []results.WakeAttempt{{Command: "wake peer-a2 --password 0A-0B-0C-0D-0E-0F", Packets: 5, ToPacketMS: 61}, {Command: "wake peer-a2", At: cmdAt}}},
		{Host: "peer-x", Suspended: res.Started.Add(3 * time.Second), Woken: true, Error: "starting the peer again: exit 1"},
	}
	page := render(t, res)
	for _, s := range []string{"Wake-on-LAN", `class="wakes"`, "jump --wake peer-a1 -- echo hi", "42 ms", "peer-a2", "5 from peer-a2",
		"<b>5</b> with the wrong password", `wakechip asleep`, `wakechip woken`, `wakechip failed`, "starting the peer again: exit 1", "1.00 s",
		"wake peer-a2 --password 0A-0B-0C-0D-0E-0F: 5 packets, the first after 61 ms", "wake peer-a2: no packet"} {
		if !strings.Contains(page, s) {
			t.Errorf("the report lacks %q", s)
		}
	}
	if page := render(t, synthetic()); strings.Contains(page, `class="wakes"`) {
		t.Error("a run without wakes shows the Wake-on-LAN table")
	}
}
