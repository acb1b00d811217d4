package netlab

import "github.com/google/nftables"

// NATStats counts what a network's NAT dropped. For cgnat the carrier's
// counts are included.
type NATStats struct {
	// Unsolicited counts new flows from the WAN side that the NAT refused:
	// to forward, and TCP to the NAT itself (silently, RFC 5382 REQ-4).
	Unsolicited uint64
	// UDPBlocked counts UDP packets dropped by a udp-blocked NAT.
	UDPBlocked uint64
	// UDPRefused counts UDP datagrams from the WAN side, addressed to the
	// NAT itself, that matched no mapping (conntrack new): where
	// unsolicited packets to a mapped address end when the filtering
	// refuses them. The NAT drops them, as a real gateway's firewall does.
	UDPRefused uint64
}

// NATStats reads the counters of the network's NAT; all zero for public and
// isolated networks.
func (n *Network) NATStats() (NATStats, error) {
	var s NATStats
	if n.uplink == nil {
		return s, nil
	}
	for _, ns := range []*netNS{n.router, n.carrier} {
		if ns == nil {
			continue
		}
		table := n.lab.prefix + natTableSuffix
		u, err := counters(ns, table, nftables.TableFamilyIPv4, ruleUnsolicited)
		if err != nil {
			return s, err
		}
		b, err := counters(ns, table, nftables.TableFamilyIPv4, ruleUDPBlocked)
		if err != nil {
			return s, err
		}
		r, err := counters(ns, table, nftables.TableFamilyIPv4, ruleUDPRefused)
		if err != nil {
			return s, err
		}
		s.Unsolicited += u
		s.UDPBlocked += b
		s.UDPRefused += r
	}
	return s, nil
}

// LinkStats counts what a cable dropped. Out is the direction away from the
// host (for an uplink: away from the network's router, towards the
// internet); In is the direction towards it.
type LinkStats struct {
	LostOut, LostIn uint64 // dropped by the link's random loss
	// PartitionedOut and PartitionedIn count packets dropped while the
	// link was partitioned.
	PartitionedOut, PartitionedIn uint64
	// WireDrops counts frames the latency wire dropped, either way,
	// because its queue was full.
	WireDrops uint64
}

// LinkStats reads the counters of the host's cables, summed over its
// interfaces.
func (h *Host) LinkStats() (LinkStats, error) {
	var sum LinkStats
	for _, c := range h.cables {
		s, err := c.stats(h.lab.prefix)
		if err != nil {
			return sum, err
		}
		sum.LostOut += s.LostOut
		sum.LostIn += s.LostIn
		sum.PartitionedOut += s.PartitionedOut
		sum.PartitionedIn += s.PartitionedIn
		sum.WireDrops += s.WireDrops
	}
	return sum, nil
}

// UplinkStats reads the counters of the network's uplink; zero for public
// and isolated networks.
func (n *Network) UplinkStats() (LinkStats, error) {
	if n.uplink == nil {
		return LinkStats{}, nil
	}
	return n.uplink.stats(n.lab.prefix)
}

func (c *cable) stats(prefix string) (LinkStats, error) {
	var s LinkStats
	// Each end counts what arrives at it: the far end (b) counts Out.
	for _, end := range []struct {
		ns         *netNS
		dev        string
		lost, part *uint64
	}{{c.b, c.bDev, &s.LostOut, &s.PartitionedOut}, {c.a, c.aDev, &s.LostIn, &s.PartitionedIn}} {
		var err error
		if *end.lost, err = chainCounter(end.ns, prefix+linkTableSuffix, end.dev, ruleLoss); err != nil {
			return s, err
		}
		if *end.part, err = chainCounter(end.ns, prefix+linkTableSuffix, end.dev, rulePartition); err != nil {
			return s, err
		}
	}
	if c.wire != nil {
		s.WireDrops = c.wire.drops.Load()
	}
	return s, nil
}
