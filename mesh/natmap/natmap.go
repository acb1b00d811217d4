package natmap

import (
	"net/netip"
	"slices"
	"time"
)

// Observation is one flow from the socket and what its destination saw.
type Observation struct {
	// Dest is where the flow went: the observer.
	Dest netip.AddrPort
	// Mapped is the address and port the observer saw the flow come from.
	Mapped netip.AddrPort
	// At is when the flow was opened; zero when unknown.
	At time.Time
}

// Kind is a mapping behaviour.
type Kind string

// The mapping behaviours Classify tells apart.
const (
	Unknown             Kind = "unknown"
	EndpointIndependent Kind = "endpoint-independent"
	Sequential          Kind = "sequential"
	Random              Kind = "random"
)

// Limits of what Classify calls sequential.
const (
	// MaxStep is the largest step between two flows of the socket that
	// still counts as sequential: a NAT shared by a few busy hosts. Two
	// random ports fall that close (and in order) with odds of 1 in 1,000,
	// three in a row 1 in a million.
	MaxStep = 64
	// minWrap is how far a sequential counter falls back when it wraps
	// from the top of its range to the bottom: a fall that small is a
	// reordering, not a wrap.
	minWrap = 1024
)

// Mapping is what Classify learnt about a socket's mapping.
type Mapping struct {
	Kind Kind
	// Public is the NAT's address the observers saw (zero when they saw
	// more than one: Kind is then Random).
	Public netip.Addr
	// Last is the port of the last flow observed, LastAt when it was opened.
	Last   uint16
	LastAt time.Time
	// Step is, for a sequential mapping, the median step between two
	// consecutive flows of the socket.
	Step int
	// ForeignRate is, for a sequential mapping whose observations carry
	// times (Timed), how many ports per second other flows took from the
	// counter between the socket's own.
	ForeignRate float64
	Timed       bool
	// Flows is how many distinct flows the classification rests on.
	Flows int
}

// Classify tells the mapping behaviour from observations of one socket and
// one protocol, in time order. A repeated destination that saw the same
// port is the same flow and counts once.
func Classify(obs []Observation) Mapping {
	flows := distinctFlows(obs)
	m := Mapping{Kind: Unknown, Flows: len(flows)}
	if len(flows) == 0 {
		return m
	}
	last := flows[len(flows)-1]
	m.Public, m.Last, m.LastAt = last.Mapped.Addr(), last.Mapped.Port(), last.At
	dests := map[netip.AddrPort]bool{}
	for _, f := range flows {
		dests[f.Dest] = true
		if f.Mapped.Addr() != m.Public {
			// An address pool with arbitrary pairing (RFC 4787 REQ-2
			// broken): no port prediction helps.
			m.Kind, m.Public = Random, netip.Addr{}
			return m
		}
	}
	if len(dests) < 2 && allSamePort(flows) {
		// One destination that saw one port cannot tell an
		// endpoint-independent mapping from any other. One that saw new
		// ports for new flows from the socket can: the mapping is not
		// endpoint-independent (the puncher's fresh observations before
		// each punch go to one relay and push older flows out).
		return m
	}
	if allSamePort(flows) {
		m.Kind = EndpointIndependent
		return m
	}
	var steps []int
	wraps := 0
	for i := 1; i < len(flows); i++ {
		d := int(flows[i].Mapped.Port()) - int(flows[i-1].Mapped.Port())
		switch {
		case d >= 1 && d <= MaxStep:
			steps = append(steps, d)
		case d <= -minWrap && wraps == 0:
			wraps++ // the counter went round once; its step is unknown
		default:
			m.Kind = Random
			return m
		}
	}
	if len(steps) == 0 {
		m.Kind = Random // only a wrap: two ports far apart
		return m
	}
	m.Kind = Sequential
	m.Step = median(steps)
	m.ForeignRate, m.Timed = foreignRate(flows)
	return m
}

// distinctFlows drops observations of a flow already observed (same
// destination, same mapping).
func distinctFlows(obs []Observation) []Observation {
	seen := map[[2]netip.AddrPort]bool{}
	var out []Observation
	for _, o := range obs {
		k := [2]netip.AddrPort{o.Dest, o.Mapped}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, o)
	}
	return out
}

func allSamePort(flows []Observation) bool {
	for _, f := range flows {
		if f.Mapped.Port() != flows[0].Mapped.Port() {
			return false
		}
	}
	return true
}

func median(v []int) int {
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}

// foreignRate is how many ports per second others took between the
// socket's own flows: each step of d means d-1 ports went to other flows.
// Not ok when the observations carry no times or span no time; a wrap (a
// negative step) is left out.
func foreignRate(flows []Observation) (rate float64, ok bool) {
	var foreign int
	var span time.Duration
	for i := 1; i < len(flows); i++ {
		a, b := flows[i-1], flows[i]
		d := int(b.Mapped.Port()) - int(a.Mapped.Port())
		if a.At.IsZero() || b.At.IsZero() || d < 1 {
			continue
		}
		foreign += d - 1
		span += b.At.Sub(a.At)
	}
	if span <= 0 {
		return 0, false
	}
	return float64(foreign) / span.Seconds(), true
}
