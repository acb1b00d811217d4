package netlab

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/google/nftables"
)

// NATStats counts what a network's NAT dropped. For cgnat the carrier's
// counts are included.
type NATStats struct {
	// Unsolicited counts new flows from the WAN side that the NAT refused
	// to forward.
	Unsolicited uint64
	// UDPBlocked counts UDP packets dropped by a udp-blocked NAT.
	UDPBlocked uint64
	// UDPNoPorts counts UDP datagrams addressed to the NAT itself that
	// matched no mapping and no socket: where unsolicited packets to a
	// mapped address end when the filtering refuses them.
	UDPNoPorts uint64
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
		np, err := snmpCounter(ns, "Udp", "NoPorts")
		if err != nil {
			return s, err
		}
		s.Unsolicited += u
		s.UDPBlocked += b
		s.UDPNoPorts += np
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

// snmpCounter reads one counter of /proc/net/snmp as seen inside ns. The
// file holds pairs of lines per protocol: names, then values.
func snmpCounter(ns *netNS, proto, name string) (uint64, error) {
	var data []byte
	err := ns.do(func() (err error) {
		// thread-self: /proc/self/net is the namespace of the process's
		// main thread, not of this one.
		data, err = os.ReadFile("/proc/thread-self/net/snmp")
		return err
	})
	if err != nil {
		return 0, err
	}
	var header []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || f[0] != proto+":" {
			continue
		}
		if header == nil {
			header = f
			continue
		}
		for i := 1; i < len(f) && i < len(header); i++ {
			if header[i] == name {
				return strconv.ParseUint(f[i], 10, 64)
			}
		}
		break
	}
	return 0, fmt.Errorf("no %s %s in snmp of %s", proto, name, ns.name)
}
