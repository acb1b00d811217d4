package natmap

import (
	"math"
	"time"
)

// The packet budget of one prediction: what a hole punch aimed at a
// predicted mapping may send. A sequential NAT's next port is within a few
// of the last one unless the NAT is busy, so a short list sent twice finds
// it or nothing would; a longer sweep would look like a port scan to the
// firewall it is aimed at.
const (
	// MaxCandidates is the longest list Next returns.
	MaxCandidates = 16
	// ProbeRounds is how many times Probes sends to each candidate: the
	// first packet of a punch can be lost, or arrive before the other
	// side's own packet opened its NAT.
	ProbeRounds = 2
	// PacketBudget is the most packets Probes plans for one prediction.
	PacketBudget = MaxCandidates * ProbeRounds
	// ProbeInterval paces the packets: at most 1/ProbeInterval a second.
	ProbeInterval = 5 * time.Millisecond
)

// Next lists up to n ports (at most MaxCandidates) the socket's next flow
// will likely get, best first, for a flow opened at `at` (zero: right after
// the last observation).
//
// Endpoint-independent: the one port every flow gets. Sequential: ports
// above the last, nearest first around the expected step — the median step
// seen, or, when the observations carry times and `at` is given, one plus
// the ports others are expected to have taken since the last flow at the
// rate they were seen taking them. Random and unknown: none.
func (m Mapping) Next(at time.Time, n int) []uint16 {
	n = min(n, MaxCandidates)
	if n <= 0 {
		return nil
	}
	switch m.Kind {
	case EndpointIndependent:
		return []uint16{m.Last}
	case Sequential:
	default:
		return nil
	}
	center := max(m.Step, 1)
	if m.Timed && !at.IsZero() && !m.LastAt.IsZero() {
		elapsed := max(at.Sub(m.LastAt), 0)
		center = 1 + int(math.Round(m.ForeignRate*elapsed.Seconds()))
	}
	var out []uint16
	// center, center-1, center+1, center-2, …: offsets below 1 are ports
	// the counter already gave out; ports past 65535 are where it wraps to
	// a start nobody saw.
	for i := 0; len(out) < n && i < 2*(center+n); i++ {
		off := center + (i+1)/2
		if i%2 == 1 {
			off = center - (i+1)/2
		}
		if off < 1 {
			continue
		}
		if p := int(m.Last) + off; p <= math.MaxUint16 {
			out = append(out, uint16(p))
		}
	}
	return out
}

// Probe is one packet of a punch aimed at a predicted mapping: the port to
// send to and when, from the start of the punch.
type Probe struct {
	Port  uint16
	After time.Duration
}

// Probes plans the packets of a punch at the mapping's next ports: each
// candidate of Next once, best first, then again (ProbeRounds), one every
// ProbeInterval, never more than PacketBudget. Nil when nothing can be
// predicted.
func (m Mapping) Probes(at time.Time) []Probe {
	ports := m.Next(at, MaxCandidates)
	var out []Probe
	for range ProbeRounds {
		for _, p := range ports {
			out = append(out, Probe{Port: p, After: time.Duration(len(out)) * ProbeInterval})
		}
	}
	return out
}
