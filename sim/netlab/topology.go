package netlab

import (
	"fmt"
	"net/netip"
	"regexp"
	"sync"
	"time"
)

// Preset is a network's NAT behaviour, named after RFC 4787's mapping and
// filtering classes. See the table in docs/lab.md.
type Preset string

// The NAT presets.
const (
	// Public hosts sit on the lab's internet with a public address and no NAT.
	Public Preset = "public"
	// Easy is Linux masquerade: endpoint-independent, port-preserving
	// mapping; address-and-port-dependent filtering.
	Easy Preset = "easy"
	// Hard is masquerade fully-random: a new random port for every
	// destination (address-and-port-dependent mapping and filtering).
	Hard Preset = "hard"
	// Sequential is an enterprise firewall's address-and-port-dependent
	// mapping with sequential allocation: every new flow (a new
	// destination address or port) gets the next external port, counted
	// per protocol from a random start, whichever host behind the NAT
	// opens it. Filtering as Hard.
	Sequential Preset = "sequential"
	// CGNAT is an easy NAT behind a carrier's easy NAT, with 100.64.0.0/10
	// between the two.
	CGNAT Preset = "cgnat"
	// UDPBlocked is Easy with every UDP packet dropped at the NAT.
	UDPBlocked Preset = "udp-blocked"
	// Isolated is a LAN with no route out at all.
	Isolated Preset = "isolated"
)

// Presets lists every preset, in the order the docs present them.
func Presets() []Preset {
	return []Preset{Public, Easy, Hard, Sequential, CGNAT, UDPBlocked, Isolated}
}

func (p Preset) valid() bool {
	for _, q := range Presets() {
		if p == q {
			return true
		}
	}
	return false
}

// natted reports whether hosts of the network sit behind a router of their own.
func (p Preset) natted() bool { return p != Public }

// Topology describes a lab: its networks and the hosts on them. It is plain
// data, so a scenario file can be decoded into it.
type Topology struct {
	Networks []NetworkSpec
	Hosts    []HostSpec
}

// NetworkSpec describes one network.
type NetworkSpec struct {
	// Name is unique in the topology: 1–20 characters of [a-z0-9-],
	// starting with a letter or digit.
	Name string
	NAT  Preset
	// Subnet is the LAN of a NATed or isolated network; a /24 in the
	// private ranges is allocated when zero. Public networks ignore it:
	// their hosts take addresses in 198.51.100.0/24.
	Subnet netip.Prefix
	// Uplink shapes the cable between the network's router and the next hop
	// towards the internet (the carrier for cgnat). Ignored for public and
	// isolated networks.
	Uplink Link
	// Forwards are port forwards on the NAT router of an easy, hard or
	// udp-blocked network: new TCP and UDP flows to a port of the
	// network's public address go to a host on its LAN.
	Forwards []PortForward
}

// PortForward sends a port of a network's public address to a host on it.
type PortForward struct {
	// Port is the port on the network's public address (TCP and UDP).
	Port uint16
	// Host is a host attached to the network; HostPort the port on it
	// (Port when zero).
	Host     string
	HostPort uint16
}

// HostSpec describes one host: a namespace with an interface on its network
// and, when More names others, one more interface on each of them.
type HostSpec struct {
	// Name is unique in the topology, same alphabet as network names.
	Name    string
	Network string
	// Addr is the host's address; one is allocated when zero.
	Addr netip.Addr
	// Link shapes the cable between the host and its network.
	Link Link
	// More attaches the host to more networks, one interface each, in
	// order: a dual-homed host, such as a jumpoint between an isolated LAN
	// and an office. The default route goes through the first of the
	// host's networks (Network, then More) that has a gateway; on the
	// others the host reaches its LAN neighbours only.
	More []Attachment
}

// Attachment is one more interface of a host: the network it is on, its
// address there (allocated when zero) and its cable's shaping.
type Attachment struct {
	Network string
	Addr    netip.Addr
	Link    Link
}

// attachments are the host's interfaces in order: Network first, then More.
func (hs HostSpec) attachments() []Attachment {
	return append([]Attachment{{Network: hs.Network, Addr: hs.Addr, Link: hs.Link}}, hs.More...)
}

// maxAttachments bounds a host's interfaces (named e0 … e3).
const maxAttachments = 4

// Link shapes one cable. Every figure applies to each direction on its own:
// a cable with Latency 20ms adds 40ms to a round trip through it.
type Link struct {
	// Latency is the one-way delay, added in user space by a wire between
	// two TAP devices (this kernel has no netem).
	Latency time.Duration
	// Jitter spreads each packet's delay uniformly over
	// [Latency-Jitter, Latency+Jitter]; packets are never reordered.
	Jitter time.Duration
	// Loss is the percentage (0–100) of IPv4 packets dropped, by nftables
	// numgen at each end's ingress.
	Loss float64
	// Rate limits the cable to this many bits per second (TBF on both
	// ends' egress); zero means unlimited.
	Rate uint64
}

// delayed reports whether the cable needs a user-space wire.
func (l Link) delayed() bool { return l.Latency > 0 || l.Jitter > 0 }

func (l Link) validate() error {
	switch {
	case l.Latency < 0 || l.Jitter < 0:
		return fmt.Errorf("negative latency or jitter")
	case l.Jitter > l.Latency:
		return fmt.Errorf("jitter %v exceeds latency %v", l.Jitter, l.Latency)
	case l.Latency > maxLatency:
		return fmt.Errorf("latency %v exceeds %v", l.Latency, maxLatency)
	case l.Loss < 0 || l.Loss >= 100:
		return fmt.Errorf("loss %v%% outside [0, 100)", l.Loss)
	case l.Rate != 0 && l.Rate < minRate:
		return fmt.Errorf("rate %d bit/s below %d", l.Rate, minRate)
	}
	return nil
}

const (
	maxLatency = 10 * time.Second
	minRate    = 8000
	maxNameLen = 20
)

// nameRE is compiled at its first use: every jumpmesh process, a jump's
// included, initialises this package (issue 17).
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`) })

func validName(s string) bool { return len(s) <= maxNameLen && nameRE().MatchString(s) }

// Validate checks the topology without touching the system.
func (t Topology) Validate() error {
	_, err := t.plan()
	return err
}

func topoErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrTopology, fmt.Sprintf(format, args...))
}
