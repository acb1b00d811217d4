package main

import (
	"fmt"
	"strings"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// natView is what a peer last reported of its NAT (pb.NatReport), in show's,
// ls's and peer status's --json. It is the peer's own account.
type natView struct {
	TCP            string `json:"tcp"`
	UDP            string `json:"udp"`
	PortPreserving bool   `json:"port_preserving"`
	NoNAT          bool   `json:"no_nat,omitempty"`
	PublicAddr     string `json:"public_addr,omitempty"`
	Observers      uint32 `json:"observers"`
	// Hairpinning is "yes" or "no" (the peer's hairpin test); absent when
	// not tested.
	Hairpinning string `json:"hairpinning,omitempty"`
	Updated     string `json:"updated,omitempty"`
}

func newNATView(r *pb.NatReport) *natView {
	if r == nil {
		return nil
	}
	return &natView{TCP: r.GetTcp(), UDP: r.GetUdp(), PortPreserving: r.GetPortPreserving(), NoNAT: r.GetNoNat(),
		PublicAddr: r.GetPublicAddr(), Observers: r.GetObservers(), Hairpinning: hairpinningText(r.GetHairpinning()), Updated: jsonTime(r.GetUpdatedUnix())}
}

// hairpinningText is a report's hairpinning: "yes", "no", or "" when not
// tested.
func hairpinningText(h pb.Hairpinning) string {
	switch h {
	case pb.Hairpinning_HAIRPINNING_YES:
		return "yes"
	case pb.Hairpinning_HAIRPINNING_NO:
		return "no"
	}
	return ""
}

// natText is show's NAT line: "tcp endpoint-independent (port-preserving),
// udp endpoint-independent, hairpinning: no, seen by 2 observers"
// (hairpinning only when tested).
func natText(n *natView) string {
	if n == nil {
		return "not reported"
	}
	tcp := "tcp " + natKindText(n.TCP)
	var notes []string
	if n.NoNAT {
		notes = append(notes, "no NAT: the peer's own address")
	}
	if n.PortPreserving && !n.NoNAT {
		notes = append(notes, "port-preserving")
	}
	if len(notes) > 0 {
		tcp += " (" + strings.Join(notes, ", ") + ")"
	}
	seen := fmt.Sprintf("seen by %d observers", n.Observers)
	if n.Observers == 1 {
		seen = "seen by 1 observer"
	}
	udp := "udp " + natKindText(n.UDP)
	if n.Hairpinning != "" {
		udp += ", hairpinning: " + n.Hairpinning
	}
	return tcp + ", " + udp + ", " + seen
}

// natKindText names a natmap kind as RFC 4787 does.
func natKindText(kind string) string {
	switch kind {
	case "random":
		return "endpoint-dependent (random ports)"
	case "sequential":
		return "endpoint-dependent (sequential ports)"
	case "":
		return "unknown"
	}
	return kind
}
