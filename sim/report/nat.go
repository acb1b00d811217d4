package report

import (
	"fmt"

	"github.com/jumpmesh/jumpmesh/sim/results"
)

// natText is the topology's line for a peer's NAT report: "NAT tcp
// endpoint-independent (port-preserving), udp unknown, hairpinning: no, 2
// observers" (hairpinning when tested); "" when the host reported none.
func natText(h *results.HostNAT) string {
	if h == nil {
		return ""
	}
	tcp := "tcp " + natKind(h.TCP)
	switch {
	case h.NoNAT:
		tcp += " (no NAT)"
	case h.PortPreserving:
		tcp += " (port-preserving)"
	}
	observers := "observers"
	if h.Observers == 1 {
		observers = "observer"
	}
	udp := "udp " + natKind(h.UDP)
	if h.Hairpinning != "" {
		udp += ", hairpinning: " + h.Hairpinning
	}
	return fmt.Sprintf("NAT %s, %s, %d %s", tcp, udp, h.Observers, observers)
}

// natKind names a natmap kind as RFC 4787 does.
func natKind(k string) string {
	switch k {
	case "random":
		return "endpoint-dependent (random ports)"
	case "sequential":
		return "endpoint-dependent (sequential ports)"
	case "":
		return "unknown"
	}
	return k
}
