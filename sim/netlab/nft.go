package netlab

import (
	"fmt"
	"math/rand/v2"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// Rule comments the lab reads counters back by.
const (
	ruleUnsolicited = "unsolicited"  // NAT: new inbound flows from the WAN
	ruleUDPRefused  = "udp-refused"  // NAT: new UDP from the WAN to the router itself
	ruleUDPBlocked  = "udp-blocked"  // udp-blocked: UDP through the NAT
	ruleForward     = "forward"      // NAT: a port forward (DNAT and its acceptance)
	ruleLoss        = "loss"         // link: random loss at ingress
	rulePartition   = "partition"    // link: everything, while partitioned
	natTableSuffix  = "nat"          // <prefix>nat, family ip
	linkTableSuffix = "link"         // <prefix>link, family netdev
	etherTypeIPv4   = uint16(0x0800) // loss spares ARP: a lost ARP stalls a flow for a second
)

func ifname(n string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, n)
	return b
}

func comment(s string) []byte { return userdata.AppendString(nil, userdata.TypeComment, s) }

// installNAT makes ns a NAT router towards wan, whose address is public,
// with the preset's behaviour. The tables carry the lab's prefix like every
// other object.
func installNAT(ns *netNS, prefix, wan string, public netip.Addr, p Preset, forwards []fwdPlan) error {
	return ns.nft(func(c *nftables.Conn) error { return addNAT(c, ns.name, prefix, wan, public, p, forwards) })
}

func addNAT(c *nftables.Conn, where, prefix, wan string, public netip.Addr, p Preset, forwards []fwdPlan) error {
	t := c.AddTable(&nftables.Table{Name: prefix + natTableSuffix, Family: nftables.TableFamilyIPv4})
	post := c.AddChain(&nftables.Chain{
		Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	if p == Sequential {
		addSequentialSNAT(c, t, post, wan, public)
	}
	// Linux masquerade keeps the source port whenever the resulting tuple is
	// unique, which makes the mapping endpoint-independent and
	// port-preserving; fully-random draws a new port for every flow.
	c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(wan)},
		&expr.Masq{FullyRandom: p == Hard},
	}})
	accept := nftables.ChainPolicyAccept
	fwd := c.AddChain(&nftables.Chain{
		Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	if len(forwards) > 0 {
		addForwards(c, t, fwd, wan, forwards)
	}
	// Conntrack lets replies in; nothing else may start from the WAN side.
	// (Unsolicited packets to the router's own address never reach this
	// chain: they go to the input chain below.)
	c.AddRule(&nftables.Rule{Table: t, Chain: fwd, UserData: comment(ruleUnsolicited), Exprs: append([]expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(wan)},
	}, dropNewFlows()...)})
	// RFC 5382 REQ-4: a NAT must not answer an unsolicited inbound SYN (for
	// at least 6 s), so that TCP hole punching's simultaneous open survives
	// a SYN that arrives before the local side's own SYN made the mapping.
	// Delivered locally, such a SYN would find no socket and draw a RST
	// that kills the punch; drop new TCP from the WAN to the router itself.
	input := c.AddChain(&nftables.Chain{
		Name: "input", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookInput, Priority: nftables.ChainPriorityFilter, Policy: &accept,
	})
	c.AddRule(&nftables.Rule{Table: t, Chain: input, UserData: comment(ruleUnsolicited), Exprs: append(wanProto(wan, unix.IPPROTO_TCP),
		dropNewFlows()...)})
	// New UDP from the WAN to the router itself is dropped too, as a real
	// gateway's firewall does (OpenWrt's wan zone rejects input, most home
	// routers drop it). Delivered locally, the datagram would find no
	// socket, yet conntrack would confirm an entry for it; a later outbound
	// flow whose reply tuple equals that entry then gets another source
	// port. So a punch or probe packet that reaches a NAT before the
	// mapping it aims at exists would take, from the mapping made next,
	// exactly the port it was aimed at. Dropped here, the entry is never
	// confirmed (confirmation comes after the filter hooks).
	c.AddRule(&nftables.Rule{Table: t, Chain: input, UserData: comment(ruleUDPRefused), Exprs: append(wanProto(wan, unix.IPPROTO_UDP),
		dropNewFlows()...)})
	if p == UDPBlocked {
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, UserData: comment(ruleUDPBlocked), Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("installing %s NAT in %s: %w", p, where, err)
	}
	return nil
}

// The sequential preset's ports: each protocol's counter starts at a random
// port in [seqBase, seqBase+seqSpan) and, after seqSpan flows, wraps back
// to its start; ports stay below seqBase+2*seqSpan.
const (
	seqBase = 20000
	seqSpan = 20000
)

// addSequentialSNAT adds, ahead of the plain masquerade, one rule per
// protocol (TCP, UDP) that source-NATs a new flow to the WAN address and
// the next port of that protocol's counter: numgen inc, evaluated once per
// new conntrack (a NAT chain sees only a flow's first packet). Linux's own
// allocator keeps the source port or, on a clash, draws a random one; it
// never counts, so the counter has to be in the rule. (masquerade with a
// port register would do, but google/nftables cannot send the
// proto-specified flag it needs; without it the kernel ignores the port.)
func addSequentialSNAT(c *nftables.Conn, t *nftables.Table, post *nftables.Chain, wan string, public netip.Addr) {
	addr := public.As4()
	for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
		c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(wan)},
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
			&expr.Immediate{Register: 1, Data: addr[:]},
			// The counter starts at 0: the first flow gets Offset.
			&expr.Numgen{Register: 2, Type: unix.NFT_NG_INCREMENTAL, Modulus: seqSpan,
				Offset: uint32(seqBase + rand.IntN(seqSpan))},
			// numgen writes host order; the NAT reads the port in network order.
			&expr.Byteorder{SourceRegister: 2, DestRegister: 2, Op: expr.ByteorderHton, Len: 2, Size: 2},
			&expr.NAT{Type: expr.NATTypeSourceNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
		}})
	}
}

// addForwards adds the port forwards: DNAT of new flows from the WAN to a
// forwarded port (TCP and UDP), and their acceptance in fwd ahead of the
// rule that drops unsolicited flows.
func addForwards(c *nftables.Conn, t *nftables.Table, fwd *nftables.Chain, wan string, forwards []fwdPlan) {
	pre := c.AddChain(&nftables.Chain{
		Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest,
	})
	for _, f := range forwards {
		for _, proto := range []byte{unix.IPPROTO_TCP, unix.IPPROTO_UDP} {
			addr := f.addr.As4()
			c.AddRule(&nftables.Rule{Table: t, Chain: pre, UserData: comment(ruleForward), Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(wan)},
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
				// The destination port: two bytes at offset 2 of TCP and UDP.
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(f.port)},
				&expr.Immediate{Register: 1, Data: addr[:]},
				&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(f.hostPort)},
				&expr.Counter{},
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
			}})
		}
	}
	c.AddRule(&nftables.Rule{Table: t, Chain: fwd, UserData: comment(ruleForward), Exprs: []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ctStatusDNAT),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
}

// ctStatusDNAT is IPS_DST_NAT: conntrack status of a destination-NATed flow.
const ctStatusDNAT = 1 << 5

// wanProto starts a rule: packets of one L4 protocol arriving on wan.
func wanProto(wan string, proto byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(wan)},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
	}
}

// dropNewFlows ends a rule: count and drop packets that start a flow
// (conntrack state new or invalid).
func dropNewFlows() []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW | expr.CtStateBitINVALID),
			Xor:  binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}
}

// linkChain creates the ingress chain of one cable end, with the loss rule
// when the link has loss. Every cable end gets one, so a partition can be
// added later by rule.
func linkChain(ns *netNS, prefix, dev string, loss float64) error {
	return ns.nft(func(c *nftables.Conn) error { return addLinkChain(c, ns.name, prefix, dev, loss) })
}

func addLinkChain(c *nftables.Conn, where, prefix, dev string, loss float64) error {
	t := c.AddTable(&nftables.Table{Name: prefix + linkTableSuffix, Family: nftables.TableFamilyNetdev})
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{
		Name: dev, Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookIngress, Priority: nftables.ChainPriorityFilter,
		Device: dev, Policy: &accept,
	})
	if loss > 0 {
		// numgen random mod 10000 < loss*100: resolution 0.01%. numgen
		// writes host order and cmp compares bytes, hence the hton.
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, UserData: comment(ruleLoss), Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(etherTypeIPv4)},
			&expr.Numgen{Register: 1, Modulus: 10000, Type: unix.NFT_NG_RANDOM},
			&expr.Byteorder{SourceRegister: 1, DestRegister: 1, Op: expr.ByteorderHton, Len: 4, Size: 4},
			&expr.Cmp{Op: expr.CmpOpLt, Register: 1, Data: binaryutil.BigEndian.PutUint32(uint32(loss*100 + 0.5))},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("link chain for %s in %s: %w", dev, where, err)
	}
	return nil
}

// setPartition adds or removes the drop-everything rule of one cable end.
func setPartition(ns *netNS, prefix, dev string, on bool) error {
	return ns.nft(func(c *nftables.Conn) error { return partitionRule(c, ns.name, prefix, dev, on) })
}

func partitionRule(c *nftables.Conn, where, prefix, dev string, on bool) error {
	t := &nftables.Table{Name: prefix + linkTableSuffix, Family: nftables.TableFamilyNetdev}
	ch := &nftables.Chain{Name: dev, Table: t}
	rules, err := c.GetRules(t, ch)
	if err != nil {
		return fmt.Errorf("reading link chain %s in %s: %w", dev, where, err)
	}
	var have []*nftables.Rule
	for _, r := range rules {
		if ruleComment(r) == rulePartition {
			have = append(have, r)
		}
	}
	switch {
	case on && len(have) == 0:
		c.InsertRule(&nftables.Rule{Table: t, Chain: ch, UserData: comment(rulePartition), Exprs: []expr.Any{
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	case !on:
		for _, r := range have {
			if err := c.DelRule(r); err != nil {
				return err
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("partition %v on %s in %s: %w", on, dev, where, err)
	}
	return nil
}

func ruleComment(r *nftables.Rule) string {
	s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
	return s
}

// counters sums the packet counters of the rules commented name in every
// chain of the table.
func counters(ns *netNS, table string, family nftables.TableFamily, name string) (n uint64, err error) {
	err = ns.nft(func(c *nftables.Conn) error {
		chains, err := c.ListChainsOfTableFamily(family)
		if err != nil {
			return err
		}
		for _, ch := range chains {
			if ch.Table.Name != table {
				continue
			}
			v, err := ruleCounter(c, ch.Table, ch, name)
			if err != nil {
				return err
			}
			n += v
		}
		return nil
	})
	return n, err
}

// chainCounter is counters for one chain of a netdev table.
func chainCounter(ns *netNS, table, chain, name string) (n uint64, err error) {
	err = ns.nft(func(c *nftables.Conn) error {
		t := &nftables.Table{Name: table, Family: nftables.TableFamilyNetdev}
		n, err = ruleCounter(c, t, &nftables.Chain{Name: chain, Table: t}, name)
		return err
	})
	return n, err
}

func ruleCounter(c *nftables.Conn, t *nftables.Table, ch *nftables.Chain, name string) (uint64, error) {
	rules, err := c.GetRules(t, ch)
	if err != nil {
		return 0, fmt.Errorf("reading chain %s: %w", ch.Name, err)
	}
	var n uint64
	for _, r := range rules {
		if ruleComment(r) != name {
			continue
		}
		for _, e := range r.Exprs {
			if ctr, ok := e.(*expr.Counter); ok {
				n += ctr.Packets
			}
		}
	}
	return n, nil
}
