package netlab

import (
	"net/netip"
	"slices"
)

// The address plan. The lab's internet is one bridge holding both RFC 5737
// ranges: public hosts take 198.51.100.10 and up, NAT routers' WAN sides
// 203.0.113.10 and up, and the internet router answers on .1 of each. LANs
// default to 192.168.<n>.0/24 for the n-th network; a cgnat network's
// carrier segment is 100.64.<n>.0/24 (carrier .1, home router .2).
var (
	publicHosts  = netip.MustParsePrefix("198.51.100.0/24")
	publicRouter = netip.MustParsePrefix("203.0.113.0/24")
	cgnatSpace   = netip.MustParsePrefix("100.64.0.0/10")
	privateSpace = []netip.Prefix{
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("172.16.0.0/12"),
		netip.MustParsePrefix("192.168.0.0/16"),
	}
)

// firstAllocated is the host number the allocator starts from in every
// subnet, leaving .1–.9 for routers and explicit addresses.
const firstAllocated = 10

type netPlan struct {
	spec  NetworkSpec
	index int // 1-based, in topology order

	lan     netip.Prefix // NATed and isolated networks
	gateway netip.Addr   // the router's LAN address; zero when isolated or public
	wan     netip.Prefix // the router's WAN address and mask
	wanGW   netip.Addr   // the router's next hop

	// cgnat only: the carrier router between the home router and the internet.
	carrierWAN netip.Prefix
	carrierLAN netip.Prefix // the carrier's address on the 100.64 segment

	next int                   // next host number to allocate in lan
	used map[netip.Addr]string // LAN addresses taken, by host name
}

type hostPlan struct {
	spec HostSpec
	net  *netPlan
	addr netip.Prefix // address with the mask of its subnet
	gw   netip.Addr   // default route; zero when the network has none
}

type plan struct {
	nets  []*netPlan
	hosts []*hostPlan
}

func (t Topology) plan() (*plan, error) {
	p := &plan{}
	byName := map[string]*netPlan{}
	nextPublicRouter := firstAllocated
	for i, ns := range t.Networks {
		switch {
		case !validName(ns.Name):
			return nil, topoErr("network name %q: want 1–%d of [a-z0-9-]", ns.Name, maxNameLen)
		case byName[ns.Name] != nil:
			return nil, topoErr("network %q defined twice", ns.Name)
		case !ns.NAT.valid():
			return nil, topoErr("network %q: unknown NAT preset %q", ns.Name, ns.NAT)
		}
		if err := ns.Uplink.validate(); err != nil {
			return nil, topoErr("network %q uplink: %v", ns.Name, err)
		}
		np := &netPlan{spec: ns, index: i + 1, next: firstAllocated, used: map[netip.Addr]string{}}
		if ns.NAT.natted() {
			if np.index > 254 {
				return nil, topoErr("more than 254 networks")
			}
			np.lan = ns.Subnet
			if !np.lan.IsValid() {
				np.lan = netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 168, byte(np.index), 0}), 24)
			}
			if err := checkLAN(np.lan); err != nil {
				return nil, topoErr("network %q: %v", ns.Name, err)
			}
			np.lan = np.lan.Masked()
			if np.lan.Bits() > 26 {
				np.next = 2 // a small LAN has no room to skip .2–.9
			}
		}
		switch ns.NAT {
		case Easy, Hard, UDPBlocked:
			np.gateway = np.lan.Addr().Next()
			np.wan = netip.PrefixFrom(nthAddr(publicRouter, nextPublicRouter), publicRouter.Bits())
			np.wanGW = publicRouter.Addr().Next()
			nextPublicRouter++
		case CGNAT:
			np.gateway = np.lan.Addr().Next()
			seg := netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64, byte(np.index), 0}), 24)
			np.carrierLAN = netip.PrefixFrom(nthAddr(seg, 1), 24)
			np.wan = netip.PrefixFrom(nthAddr(seg, 2), 24)
			np.wanGW = np.carrierLAN.Addr()
			np.carrierWAN = netip.PrefixFrom(nthAddr(publicRouter, nextPublicRouter), publicRouter.Bits())
			nextPublicRouter++
		}
		if nextPublicRouter > 254 {
			return nil, topoErr("more than %d NATed networks", 254-firstAllocated)
		}
		byName[ns.Name] = np
		p.nets = append(p.nets, np)
	}

	hostNames := map[string]bool{}
	usedPublic := map[netip.Addr]string{}
	for _, np := range p.nets {
		for _, a := range []netip.Prefix{np.wan, np.carrierWAN} {
			if a.IsValid() && publicRouter.Contains(a.Addr()) {
				usedPublic[a.Addr()] = "the router of " + np.spec.Name
			}
		}
	}
	nextPublicHost := firstAllocated
	// Explicit addresses first, so an allocated one never takes them
	// whatever the order of the hosts.
	for _, explicit := range []bool{true, false} {
		for _, hs := range t.Hosts {
			if hs.Addr.IsValid() != explicit {
				continue
			}
			switch {
			case !validName(hs.Name):
				return nil, topoErr("host name %q: want 1–%d of [a-z0-9-]", hs.Name, maxNameLen)
			case hostNames[hs.Name]:
				return nil, topoErr("host %q defined twice", hs.Name)
			case byName[hs.Network] == nil:
				return nil, topoErr("host %q: unknown network %q", hs.Name, hs.Network)
			}
			if err := hs.Link.validate(); err != nil {
				return nil, topoErr("host %q link: %v", hs.Name, err)
			}
			hostNames[hs.Name] = true
			np := byName[hs.Network]
			hp := &hostPlan{spec: hs, net: np}
			if np.spec.NAT == Public {
				a, err := pickPublic(hs, usedPublic, &nextPublicHost)
				if err != nil {
					return nil, err
				}
				usedPublic[a.Addr()] = hs.Name
				hp.addr = a
				hp.gw = nthAddr(a.Masked(), 1)
			} else {
				a, err := pickLAN(hs, np)
				if err != nil {
					return nil, err
				}
				np.used[a.Addr()] = hs.Name
				hp.addr = a
				hp.gw = np.gateway
			}
			p.hosts = append(p.hosts, hp)
		}
	}
	// Keep the topology's order for everything built from the plan.
	order := map[string]int{}
	for i, hs := range t.Hosts {
		order[hs.Name] = i
	}
	slices.SortFunc(p.hosts, func(a, b *hostPlan) int { return order[a.spec.Name] - order[b.spec.Name] })
	return p, nil
}

// pickPublic returns an explicit or allocated address on the lab's internet.
func pickPublic(hs HostSpec, used map[netip.Addr]string, next *int) (netip.Prefix, error) {
	if a := hs.Addr; a.IsValid() {
		var in netip.Prefix
		for _, pr := range []netip.Prefix{publicHosts, publicRouter} {
			if pr.Contains(a) {
				in = pr
			}
		}
		if !in.IsValid() {
			return netip.Prefix{}, topoErr("host %q: %v is not in %v or %v", hs.Name, a, publicHosts, publicRouter)
		}
		if err := checkHostNumber(hs, in, a, used); err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a, in.Bits()), nil
	}
	for ; *next < 255; *next++ {
		a := nthAddr(publicHosts, *next)
		if used[a] == "" {
			*next++
			return netip.PrefixFrom(a, publicHosts.Bits()), nil
		}
	}
	return netip.Prefix{}, topoErr("host %q: %v is full", hs.Name, publicHosts)
}

// pickLAN returns an explicit or allocated address on a network's LAN.
// Two networks may use the same private range, as two homes often do, so
// addresses are unique per LAN only.
func pickLAN(hs HostSpec, np *netPlan) (netip.Prefix, error) {
	if a := hs.Addr; a.IsValid() {
		if !np.lan.Contains(a) {
			return netip.Prefix{}, topoErr("host %q: %v is not in %v", hs.Name, a, np.lan)
		}
		if a == np.gateway {
			return netip.Prefix{}, topoErr("host %q: %v is the router's address", hs.Name, a)
		}
		if err := checkHostNumber(hs, np.lan, a, np.used); err != nil {
			return netip.Prefix{}, err
		}
		return netip.PrefixFrom(a, np.lan.Bits()), nil
	}
	size := 1 << (32 - np.lan.Bits())
	for ; np.next < size-1; np.next++ {
		if a := nthAddr(np.lan, np.next); np.used[a] == "" {
			np.next++
			return netip.PrefixFrom(a, np.lan.Bits()), nil
		}
	}
	return netip.Prefix{}, topoErr("host %q: %v is full", hs.Name, np.lan)
}

func checkHostNumber(hs HostSpec, in netip.Prefix, a netip.Addr, used map[netip.Addr]string) error {
	last := nthAddr(in, (1<<(32-in.Bits()))-1)
	switch {
	case a == in.Masked().Addr() || a == last:
		return topoErr("host %q: %v is the network or broadcast address of %v", hs.Name, a, in)
	case a == nthAddr(in.Masked(), 1) && (in == publicHosts || in == publicRouter):
		return topoErr("host %q: %v is the internet router", hs.Name, a)
	case used[a] != "":
		return topoErr("host %q: %v already belongs to %q", hs.Name, a, used[a])
	}
	return nil
}

func checkLAN(p netip.Prefix) error {
	if !p.Addr().Is4() || p.Bits() < 16 || p.Bits() > 29 {
		return errf("subnet %v: want an IPv4 prefix from /16 to /29", p)
	}
	for _, pr := range privateSpace {
		if pr.Bits() <= p.Bits() && pr.Contains(p.Addr()) {
			return nil
		}
	}
	return errf("subnet %v is not in a private range (10/8, 172.16/12, 192.168/16)", p)
}

// nthAddr returns the n-th address of p (n=0 is p's network address).
func nthAddr(p netip.Prefix, n int) netip.Addr {
	b := p.Masked().Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}
