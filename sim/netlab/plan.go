package netlab

import (
	"cmp"
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

	forwards []fwdPlan
}

type hostPlan struct {
	spec   HostSpec
	ifaces []ifacePlan // Network, then More
	// net and addr are the first interface's.
	net     *netPlan
	addr    netip.Prefix // address with the mask of its subnet
	gw      netip.Addr   // default route; zero when no network of the host has one
	gwIface int          // the interface the default route goes through
}

// ifacePlan is one interface of a host.
type ifacePlan struct {
	net  *netPlan
	addr netip.Prefix
	gw   netip.Addr // the network's gateway, if it has one
	link Link
}

// fwdPlan is a port forward with the host's address resolved.
type fwdPlan struct {
	port     uint16
	addr     netip.Addr
	hostPort uint16
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
		case Easy, Hard, Sequential, UDPBlocked:
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

	usedPublic := map[netip.Addr]string{}
	for _, np := range p.nets {
		for _, a := range []netip.Prefix{np.wan, np.carrierWAN} {
			if a.IsValid() && publicRouter.Contains(a.Addr()) {
				usedPublic[a.Addr()] = "the router of " + np.spec.Name
			}
		}
	}
	byHost := map[string]*hostPlan{}
	for _, hs := range t.Hosts {
		switch {
		case !validName(hs.Name):
			return nil, topoErr("host name %q: want 1–%d of [a-z0-9-]", hs.Name, maxNameLen)
		case byHost[hs.Name] != nil:
			return nil, topoErr("host %q defined twice", hs.Name)
		case len(hs.More) >= maxAttachments:
			return nil, topoErr("host %q: more than %d networks", hs.Name, maxAttachments)
		}
		hp := &hostPlan{spec: hs}
		public := 0
		for _, at := range hs.attachments() {
			np := byName[at.Network]
			switch {
			case np == nil:
				return nil, topoErr("host %q: unknown network %q", hs.Name, at.Network)
			case slices.ContainsFunc(hp.ifaces, func(i ifacePlan) bool { return i.net == np }):
				return nil, topoErr("host %q: on network %q twice", hs.Name, at.Network)
			case slices.ContainsFunc(hp.ifaces, func(i ifacePlan) bool { return i.net.lan.IsValid() && np.lan.IsValid() && i.net.lan.Overlaps(np.lan) }):
				return nil, topoErr("host %q: network %q's subnet %v overlaps another of its networks", hs.Name, at.Network, np.lan)
			}
			if np.spec.NAT == Public {
				// Every public network is the same internet bridge.
				if public++; public > 1 {
					return nil, topoErr("host %q: on more than one public network", hs.Name)
				}
			}
			if err := at.Link.validate(); err != nil {
				return nil, topoErr("host %q link to %s: %v", hs.Name, at.Network, err)
			}
			hp.ifaces = append(hp.ifaces, ifacePlan{net: np, link: at.Link})
		}
		byHost[hs.Name] = hp
		p.hosts = append(p.hosts, hp)
	}
	nextPublicHost := firstAllocated
	// Explicit addresses first, so an allocated one never takes them
	// whatever the order of the hosts.
	for _, explicit := range []bool{true, false} {
		for _, hp := range p.hosts {
			for i, at := range hp.spec.attachments() {
				if at.Addr.IsValid() != explicit {
					continue
				}
				ip := &hp.ifaces[i]
				if ip.net.spec.NAT == Public {
					a, err := pickPublic(hp.spec.Name, at.Addr, usedPublic, &nextPublicHost)
					if err != nil {
						return nil, err
					}
					usedPublic[a.Addr()] = hp.spec.Name
					ip.addr, ip.gw = a, nthAddr(a.Masked(), 1)
				} else {
					a, err := pickLAN(hp.spec.Name, at.Addr, ip.net)
					if err != nil {
						return nil, err
					}
					ip.net.used[a.Addr()] = hp.spec.Name
					ip.addr, ip.gw = a, ip.net.gateway
				}
			}
		}
	}
	for _, hp := range p.hosts {
		hp.net, hp.addr = hp.ifaces[0].net, hp.ifaces[0].addr
		for i, ip := range hp.ifaces {
			if ip.gw.IsValid() {
				hp.gw, hp.gwIface = ip.gw, i
				break
			}
		}
	}
	for _, np := range p.nets {
		if err := np.planForwards(byHost); err != nil {
			return nil, err
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
func pickPublic(name string, a netip.Addr, used map[netip.Addr]string, next *int) (netip.Prefix, error) {
	if a.IsValid() {
		var in netip.Prefix
		for _, pr := range []netip.Prefix{publicHosts, publicRouter} {
			if pr.Contains(a) {
				in = pr
			}
		}
		if !in.IsValid() {
			return netip.Prefix{}, topoErr("host %q: %v is not in %v or %v", name, a, publicHosts, publicRouter)
		}
		if err := checkHostNumber(name, in, a, used); err != nil {
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
	return netip.Prefix{}, topoErr("host %q: %v is full", name, publicHosts)
}

// pickLAN returns an explicit or allocated address on a network's LAN.
// Two networks may use the same private range, as two homes often do, so
// addresses are unique per LAN only.
func pickLAN(name string, a netip.Addr, np *netPlan) (netip.Prefix, error) {
	if a.IsValid() {
		if !np.lan.Contains(a) {
			return netip.Prefix{}, topoErr("host %q: %v is not in %v", name, a, np.lan)
		}
		if a == np.gateway {
			return netip.Prefix{}, topoErr("host %q: %v is the router's address", name, a)
		}
		if err := checkHostNumber(name, np.lan, a, np.used); err != nil {
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
	return netip.Prefix{}, topoErr("host %q: %v is full", name, np.lan)
}

func checkHostNumber(name string, in netip.Prefix, a netip.Addr, used map[netip.Addr]string) error {
	last := nthAddr(in, (1<<(32-in.Bits()))-1)
	switch {
	case a == in.Masked().Addr() || a == last:
		return topoErr("host %q: %v is the network or broadcast address of %v", name, a, in)
	case a == nthAddr(in.Masked(), 1) && (in == publicHosts || in == publicRouter):
		return topoErr("host %q: %v is the internet router", name, a)
	case used[a] != "":
		return topoErr("host %q: %v already belongs to %q", name, a, used[a])
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

// planForwards checks the network's port forwards and resolves their hosts.
func (np *netPlan) planForwards(hosts map[string]*hostPlan) error {
	if len(np.spec.Forwards) == 0 {
		return nil
	}
	switch np.spec.NAT {
	case Easy, Hard, Sequential, UDPBlocked:
	default:
		return topoErr("network %q: port forwards need an easy, hard, sequential or udp-blocked NAT, not %s", np.spec.Name, np.spec.NAT)
	}
	seen := map[uint16]bool{}
	for _, f := range np.spec.Forwards {
		hp := hosts[f.Host]
		if hp == nil {
			return topoErr("network %q: port %d forwarded to unknown host %q", np.spec.Name, f.Port, f.Host)
		}
		i := slices.IndexFunc(hp.ifaces, func(i ifacePlan) bool { return i.net == np })
		switch {
		case f.Port == 0:
			return topoErr("network %q: port forward to %s without a port", np.spec.Name, f.Host)
		case seen[f.Port]:
			return topoErr("network %q: port %d forwarded twice", np.spec.Name, f.Port)
		case i < 0:
			return topoErr("network %q: port %d forwarded to %s, which is not on it", np.spec.Name, f.Port, f.Host)
		}
		seen[f.Port] = true
		np.forwards = append(np.forwards, fwdPlan{port: f.Port, addr: hp.ifaces[i].addr.Addr(), hostPort: cmp.Or(f.HostPort, f.Port)})
	}
	return nil
}
