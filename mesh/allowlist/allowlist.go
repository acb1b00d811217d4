// Package allowlist parses, checks and matches a jumpoint's agentless
// allow list: the IP prefixes and ports technicians may reach through a
// jumpoint without a peer there (`jumpmesh jumpoint set NAME --allow
// 10.20.0.0/16:22,3389`). The coordinator validates the list when an
// administrator sets it and checks each grant against it; the jumpoint
// checks each tunnel against the copy its ACL carries. Pure: no network.
//
// An entry is PREFIX:PORTS. PREFIX is an IPv4 or IPv6 prefix in its
// canonical form (10.20.0.0/16, fd00:1::/64) or a single address
// (10.30.0.5, [fd00::5]); PORTS is a comma-separated list of ports and
// ranges (22,3389,8000-8100).
//
// Loopback targets match only an entry whose prefix lies inside loopback
// (127.0.0.0/8 or ::1): a broad entry such as 0.0.0.0/0 must not open the
// services the jumpoint's own host keeps on 127.0.0.1. Unspecified and
// multicast addresses never match.
package allowlist

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Bounds on a list: it travels in every jumpoint ACL and is matched for
// every tunnel.
const (
	MaxEntries = 64
	MaxRanges  = 32 // port ranges in one entry
)

// Parse reads one entry. Errors are invalid_argument and name the entry.
func Parse(s string) (*pb.AllowRule, error) {
	bad := func(why string, args ...any) error {
		return catalog.Errorf(catalog.CodeInvalidArgument, "Allow entry %q: %s (write PREFIX:PORTS, e.g. 10.20.0.0/16:22,3389 or 10.30.0.5:80).",
			s, fmt.Sprintf(why, args...))
	}
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return nil, bad("no ports")
	}
	head, ports := s[:i], s[i+1:]
	head = strings.TrimSuffix(strings.TrimPrefix(head, "["), "]")
	var prefix netip.Prefix
	if strings.Contains(head, "/") {
		p, err := netip.ParsePrefix(head)
		if err != nil {
			return nil, bad("%q is not an IP prefix", head)
		}
		if p.Addr().Zone() != "" {
			return nil, bad("no zones")
		}
		if p.Masked() != p {
			return nil, bad("%s has host bits set; the prefix is %s", p, p.Masked())
		}
		prefix = p
	} else {
		a, err := netip.ParseAddr(head)
		if err != nil || a.Zone() != "" {
			return nil, bad("%q is not an IP address or prefix (names are not allowed: the jumpoint connects to IP addresses)", head)
		}
		prefix = netip.PrefixFrom(a, a.BitLen())
	}
	if prefix.Addr().Is4In6() && prefix.Bits() >= 96 {
		prefix = netip.PrefixFrom(prefix.Addr().Unmap(), prefix.Bits()-96)
	}
	if a := prefix.Addr(); prefix.Bits() == prefix.Addr().BitLen() && (a.IsUnspecified() || a.IsMulticast()) {
		return nil, bad("%s is not a host", a)
	}
	r := &pb.AllowRule{Prefix: prefix.String()}
	if ports == "" {
		return nil, bad("no ports")
	}
	for _, p := range strings.Split(ports, ",") {
		from, to, ok := strings.Cut(p, "-")
		if !ok {
			to = from
		}
		f, err1 := parsePort(from)
		t, err2 := parsePort(to)
		if err1 != nil || err2 != nil {
			return nil, bad("port %q: ports are 1 to 65535", p)
		}
		if t < f {
			return nil, bad("port range %q ends before it starts", p)
		}
		r.Ports = append(r.Ports, &pb.PortRange{From: uint32(f), To: uint32(t)})
	}
	if len(r.Ports) > MaxRanges {
		return nil, bad("%d port ranges; at most %d in one entry", len(r.Ports), MaxRanges)
	}
	return r, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("bad port")
	}
	return uint16(n), nil
}

// ParseList reads a whole list (empty entries are refused; an empty list
// is allowed: it allows nothing).
func ParseList(entries []string) ([]*pb.AllowRule, error) {
	if len(entries) > MaxEntries {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "An allow list has at most %d entries (got %d).", MaxEntries, len(entries))
	}
	out := make([]*pb.AllowRule, 0, len(entries))
	for _, e := range entries {
		r, err := Parse(e)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// Format writes a rule as Parse reads it.
func Format(r *pb.AllowRule) string {
	var b strings.Builder
	p, err := netip.ParsePrefix(r.GetPrefix())
	switch {
	case err == nil && p.IsSingleIP() && p.Addr().Is6():
		b.WriteString("[" + p.Addr().String() + "]")
	case err == nil && p.IsSingleIP():
		b.WriteString(p.Addr().String())
	default:
		b.WriteString(r.GetPrefix())
	}
	b.WriteByte(':')
	for i, pr := range r.GetPorts() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(uint64(pr.GetFrom()), 10))
		if pr.GetTo() != pr.GetFrom() {
			b.WriteString("-" + strconv.FormatUint(uint64(pr.GetTo()), 10))
		}
	}
	return b.String()
}

// FormatList is the list as text for messages: "a, b, c", or "nothing"
// for an empty list.
func FormatList(rules []*pb.AllowRule) string {
	if len(rules) == 0 {
		return "nothing (no allow list is set)"
	}
	parts := make([]string, 0, len(rules))
	for _, r := range rules {
		parts = append(parts, Format(r))
	}
	return strings.Join(parts, ", ")
}

// List is a parsed list, ready to match.
type List struct {
	rules []rule
	text  string
}

type rule struct {
	prefix   netip.Prefix
	ports    [][2]uint16
	loopback bool // the prefix lies inside loopback
}

// Compile checks rules (from the store or an ACL) and makes a List. An
// entry that does not check is an error: a list is used whole or not.
func Compile(rules []*pb.AllowRule) (*List, error) {
	if len(rules) > MaxEntries {
		return nil, catalog.Errorf(catalog.CodeInvalidArgument, "(an allow list of %d entries; at most %d)", len(rules), MaxEntries)
	}
	l := &List{text: FormatList(rules)}
	for _, r := range rules {
		// Parse checks what an entry may hold; going through the text keeps
		// one definition.
		checked, err := Parse(Format(r))
		if err != nil {
			return nil, err
		}
		p := netip.MustParsePrefix(checked.GetPrefix())
		rl := rule{prefix: p, loopback: p.Addr().IsLoopback() && p.Bits() >= loopbackBits(p.Addr())}
		for _, pr := range checked.GetPorts() {
			rl.ports = append(rl.ports, [2]uint16{uint16(pr.GetFrom()), uint16(pr.GetTo())})
		}
		l.rules = append(l.rules, rl)
	}
	return l, nil
}

// loopbackBits is the length of the loopback prefix of a's family.
func loopbackBits(a netip.Addr) int {
	if a.Is4() {
		return 8
	}
	return 128
}

// Allows reports whether target (an IP address and port) is in the list.
func (l *List) Allows(target netip.AddrPort) bool {
	if l == nil {
		return false
	}
	a := target.Addr().Unmap()
	if a.IsUnspecified() || a.IsMulticast() || target.Port() == 0 || a.Zone() != "" {
		return false
	}
	for _, r := range l.rules {
		if !r.prefix.Contains(a) || (a.IsLoopback() && !r.loopback) {
			continue
		}
		for _, pr := range r.ports {
			if target.Port() >= pr[0] && target.Port() <= pr[1] {
				return true
			}
		}
	}
	return false
}

// Len is the number of entries.
func (l *List) Len() int {
	if l == nil {
		return 0
	}
	return len(l.rules)
}

// String is the list as text, for messages.
func (l *List) String() string {
	if l == nil {
		return FormatList(nil)
	}
	return l.text
}

// ParseTarget reads an agentless target: an IP address and a port
// (names are refused: the target's name may resolve only on the
// jumpoint's network, and the jumpoint connects to addresses). It returns
// the canonical form.
func ParseTarget(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
		return netip.AddrPort{}, catalog.Errorf(catalog.CodeInvalidArgument,
			"Target %q: give an IP address and a port, e.g. 10.20.0.5:22 or [fd00::5]:22 (names are not resolved: the jumpoint connects to addresses).", s)
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), nil
}
