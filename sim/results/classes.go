package results

import (
	"math"
	"slices"
)

// The pair classes of a NAT grid, in the order reports show them. A pair is
// put in the first class that fits: both sides endpoint-independent, then a
// udp-blocked side (its UDP never gets through, so it punches over TCP
// alone), then by its hard and sequential sides.
const (
	// ClassEndpointIndependent: both sides public, easy or cgnat (one
	// public port per socket for every destination): punching should
	// always end direct.
	ClassEndpointIndependent = "endpoint-independent"
	// ClassUDPBlocked: at least one side udp-blocked.
	ClassUDPBlocked = "udp-blocked side"
	// ClassHardHard: both sides hard (a new random port per destination).
	ClassHardHard = "hard × hard"
	// ClassHardEI: one side hard, the other endpoint-independent: what
	// port-mapping probing is for.
	ClassHardEI = "hard × endpoint-independent"
	// ClassSequentialEI: one side sequential, the other
	// endpoint-independent: what port prediction is for.
	ClassSequentialEI = "sequential × endpoint-independent"
	// ClassOther: anything else (hard × sequential, sequential ×
	// sequential, presets outside the grid).
	ClassOther = "other"
)

// ClassOrder lists the classes in the order reports show them.
var ClassOrder = []string{ClassEndpointIndependent, ClassHardEI, ClassHardHard, ClassSequentialEI, ClassUDPBlocked, ClassOther}

// ClassOf is the class of a pair of NAT presets (either order).
func ClassOf(consoleNAT, peerNAT string) string {
	ei := func(n string) bool { return n == "public" || n == "easy" || n == "cgnat" }
	a, b := consoleNAT, peerNAT
	switch {
	case ei(a) && ei(b):
		return ClassEndpointIndependent
	case a == "udp-blocked" || b == "udp-blocked":
		return ClassUDPBlocked
	case a == "hard" && b == "hard":
		return ClassHardHard
	case a == "hard" && ei(b), b == "hard" && ei(a):
		return ClassHardEI
	case a == "sequential" && ei(b), b == "sequential" && ei(a):
		return ClassSequentialEI
	default:
		return ClassOther
	}
}

// Class is what the paths of one pair class measured, over every run.
type Class struct {
	Class string `json:"class"`
	// Paths counts the connects (pairs × runs); Connected those that
	// reached the peer at all, Direct those that ended direct, AtOnce
	// those whose first connection was already direct (no punch needed).
	Paths     int `json:"paths"`
	Connected int `json:"connected"`
	Direct    int `json:"direct"`
	AtOnce    int `json:"direct_at_once"`
	// Upgraded counts the paths that started relayed and went direct;
	// TimeToDirect is their time to direct (nil when none did).
	Upgraded     int          `json:"upgraded"`
	TimeToDirect *Percentiles `json:"time_to_direct_ms,omitempty"`
	// AttemptKnown counts the upgraded paths whose punch attempt is known
	// (the peer's log), FirstTry those of them direct on the first attempt.
	AttemptKnown int `json:"attempt_known,omitempty"`
	FirstTry     int `json:"first_try,omitempty"`
	// TCP and QUIC count the direct paths by transport.
	TCP  int `json:"tcp"`
	QUIC int `json:"quic"`
	// Probed counts the paths whose console reported a port-mapping probe
	// exchange (probes_sent > 0), ProbesSent their probes in all.
	Probed     int `json:"probed,omitempty"`
	ProbesSent int `json:"probes_sent,omitempty"`
}

// Percentiles of a set of times, in milliseconds.
type Percentiles struct {
	N   int     `json:"n"`
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
}

// DirectRate is Direct of Paths, 0 to 1 (0 for no paths).
func (c Class) DirectRate() float64 {
	if c.Paths == 0 {
		return 0
	}
	return float64(c.Direct) / float64(c.Paths)
}

// Classes aggregates paths by pair class, over every run, in ClassOrder;
// a class with no paths is left out. A path ended direct when its final
// path (or, without one, its first) is direct.
func Classes(paths []Path) []Class {
	by := map[string]*Class{}
	ttd := map[string][]float64{}
	for _, p := range paths {
		k := ClassOf(p.ConsoleNAT, p.PeerNAT)
		c := by[k]
		if c == nil {
			c = &Class{Class: k}
			by[k] = c
		}
		c.Paths++
		if p.ProbesSent > 0 {
			c.Probed++
			c.ProbesSent += p.ProbesSent
		}
		if !p.OK {
			continue
		}
		c.Connected++
		final := p.Final
		if final == "" {
			final = p.Initial
		}
		if final != "direct" {
			continue
		}
		c.Direct++
		switch p.Transport {
		case "tcp":
			c.TCP++
		case "quic":
			c.QUIC++
		}
		switch {
		case p.Initial == "direct":
			c.AtOnce++
		case p.Initial == "relayed" && p.TimeToDirectMS > 0:
			c.Upgraded++
			ttd[k] = append(ttd[k], p.TimeToDirectMS)
			if p.PunchAttempt > 0 {
				c.AttemptKnown++
				if p.PunchAttempt == 1 {
					c.FirstTry++
				}
			}
		}
	}
	var out []Class
	for _, k := range ClassOrder {
		c := by[k]
		if c == nil {
			continue
		}
		if t := ttd[k]; len(t) > 0 {
			slices.Sort(t)
			c.TimeToDirect = &Percentiles{N: len(t), P50: Percentile(t, 50), P90: Percentile(t, 90), P99: Percentile(t, 99)}
		}
		out = append(out, *c)
	}
	return out
}

// Percentile of sorted values, interpolating between the nearest ranks (so
// the p50 of an even count is the mean of the middle two); 0 for none.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	r := p / 100 * float64(len(sorted)-1)
	lo, hi := int(math.Floor(r)), int(math.Ceil(r))
	return sorted[lo] + (sorted[hi]-sorted[lo])*(r-float64(lo))
}
