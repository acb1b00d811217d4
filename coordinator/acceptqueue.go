package coordinator

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
)

// The kernel's accept queue comes after the gate's waiting room. The
// handshake gate keeps the connections it cannot serve yet in its waiting
// room (handshakes.go), gateRoomMin of them before it knows the rate it
// serves (a restarted coordinator's storm), then what it serves in 8 s;
// past the room they wait in the kernel's accept queue, whose length is
// net.core.somaxconn (4,096 on Debian). When more peers than the two
// reconnect at once (every active peer, after a restart), the kernel drops
// the SYNs past them and the dialers retransmit a second or more later: no
// attempt fails, but the storm takes longer (5,000 peers at once on 2
// cores, before the room: 1,902 SYNs dropped, ~25 % longer; with 16,384,
// none; docs/performance.md, session 28). The coordinator cannot raise a
// machine-wide setting itself; it says so at start when the site's active
// peers exceed them.

// somaxconnPath is where Linux shows the accept queue's bound.
const somaxconnPath = "/proc/sys/net/core/somaxconn"

// acceptQueueAdvice is the warning for a site of active peers on a machine
// whose accept queue holds somaxconn connections, or "" when they fit in
// it and the gate's waiting room, which holds room before it knows its
// rate (a restarted coordinator's storm).
func acceptQueueAdvice(active, somaxconn, room int) string {
	if somaxconn <= 0 || active <= somaxconn+room {
		return ""
	}
	want := 1024
	for want < 2*active && want < 1<<20 {
		want *= 2
	}
	return "the kernel's accept queue and the coordinator's waiting room hold fewer than the site's active peers: after a restart, those past them " +
		"wait for their SYNs to be retransmitted; raise it, e.g. sysctl -w net.core.somaxconn=" + strconv.Itoa(want) +
		" net.ipv4.tcp_max_syn_backlog=" + strconv.Itoa(want) + " (and in /etc/sysctl.d), then restart the coordinator"
}

// warnAcceptQueue logs acceptQueueAdvice for the site's active peers, on
// Linux (elsewhere the bound is not read).
func (c *Coordinator) warnAcceptQueue(log *slog.Logger) {
	raw, err := os.ReadFile(somaxconnPath)
	if err != nil {
		return
	}
	somaxconn, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		return
	}
	_, active := c.service.peers.counts(c.service.settings().GetDefaultConnectionType())
	c.gate.mu.Lock()
	room := c.gate.roomCapLocked() // no rate yet: the least, within MaxHandshakes
	c.gate.mu.Unlock()
	if advice := acceptQueueAdvice(active, somaxconn, room); advice != "" {
		log.Warn(advice, "active_peers", active, "somaxconn", somaxconn, "waiting_room", room)
	}
}
