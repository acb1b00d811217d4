package report

import (
	"fmt"
	"strings"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/results"
)

// wakeView is one row of the Wake-on-LAN table: a sleep of a host and
// what woke it.
type wakeView struct {
	results.Wake
	Class    string // woken | asleep | failed
	Asleep   string // offset of the suspend from the run's start
	ToPacket string // command → magic packet on the wire
	Restart  string // packet → peer started again
	Senders  string
	Attempts []string // each wake command while it slept, with its packets
}

// wakeRows lays out the run's sleeps in order.
func wakeRows(res results.Run) []wakeView {
	var out []wakeView
	for _, w := range res.Wakes {
		v := wakeView{Wake: w, Class: "asleep", ToPacket: "—", Restart: "—", Senders: "none"}
		if !res.Started.IsZero() && !w.Suspended.IsZero() {
			v.Asleep = "+" + fmtDur(w.Suspended.Sub(res.Started).Truncate(time.Millisecond))
		}
		switch {
		case w.Error != "":
			v.Class = "failed"
		case w.Woken:
			v.Class = "woken"
		}
		if w.Woken && w.Command != "" {
			v.ToPacket = fmtMS(w.ToPacketMS)
			if w.RequestToPacketMS > 0 {
				v.ToPacket += " (request → packet " + fmtMS(w.RequestToPacketMS) + ")"
			}
		}
		if w.Woken {
			v.Restart = fmtMS(w.RestartMS)
		}
		for _, a := range w.Attempts {
			line := a.Command + ": no packet"
			if a.Packets > 0 {
				line = fmt.Sprintf("%s: %d packet%s, the first after %s", a.Command, a.Packets, plural(a.Packets), fmtMS(a.ToPacketMS))
			}
			v.Attempts = append(v.Attempts, line)
		}
		if len(w.Senders) > 0 {
			v.Senders = fmt.Sprintf("%d from %s", w.Packets, strings.Join(w.Senders, ", "))
		}
		out = append(out, v)
	}
	return out
}
