package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/vishvananda/netlink"
)

// newNetns creates one of the lab's namespaces with the lab's defaults:
// IPv6 off (the lab is IPv4), no reverse-path filter, loopback up.
func (l *Lab) newNetns(local string, forward bool) (*netNS, error) {
	ns, err := createNetns(l.prefix + local)
	if err != nil {
		return nil, err
	}
	// Close (from CloseAll on a signal) may have run during the build.
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		ns.release()
		return nil, errors.Join(ErrClosed, deleteNetns(ns.name))
	}
	l.spaces = append(l.spaces, ns)
	l.mu.Unlock()
	fwd := "0"
	if forward {
		fwd = "1"
	}
	err = ns.sysctls(map[string]string{
		"ipv6/conf/all/disable_ipv6":       "1",
		"ipv6/conf/default/disable_ipv6":   "1",
		"ipv4/conf/all/rp_filter":          "0",
		"ipv4/conf/default/rp_filter":      "0",
		"ipv4/conf/all/send_redirects":     "0",
		"ipv4/conf/default/send_redirects": "0",
		"ipv4/ip_forward":                  fwd,
		// Membership reports for 224.0.0.x groups are noise on every
		// link (and in every capture); nothing in the lab routes multicast.
		"ipv4/igmp_link_local_mcast_reports": "0",
	})
	if err != nil {
		return nil, err
	}
	if err := setUp(ns, "lo"); err != nil {
		return nil, err
	}
	return ns, nil
}

func (l *Lab) portName() (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.ports >= maxPorts {
		return "", fmt.Errorf("%w: more than %d cables", ErrTopology, maxPorts)
	}
	l.ports++
	return l.prefix + devPort + strconv.Itoa(l.ports), nil
}

func (l *Lab) dev(local string) string { return l.prefix + local }

// addBridge creates a bridge in ns with the given addresses and sets it up.
func (l *Lab) addBridge(ns *netNS, addrs ...netip.Prefix) error {
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: l.dev(devBridge)}}
	if err := ns.nl.LinkAdd(br); err != nil {
		return fmt.Errorf("bridge in %s: %w", ns.name, err)
	}
	if err := addAddrs(ns, l.dev(devBridge), addrs...); err != nil {
		return err
	}
	return setUp(ns, l.dev(devBridge))
}

func addAddrs(ns *netNS, dev string, addrs ...netip.Prefix) error {
	lk, err := ns.nl.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", dev, ns.name, err)
	}
	for _, a := range addrs {
		ipn := &net.IPNet{IP: a.Addr().AsSlice(), Mask: net.CIDRMask(a.Bits(), 32)}
		if err := ns.nl.AddrAdd(lk, &netlink.Addr{IPNet: ipn}); err != nil {
			return fmt.Errorf("address %v on %s in %s: %w", a, dev, ns.name, err)
		}
	}
	return nil
}

func addDefaultRoute(ns *netNS, dev string, gw netip.Addr) error {
	lk, err := ns.nl.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", dev, ns.name, err)
	}
	r := &netlink.Route{LinkIndex: lk.Attrs().Index, Gw: gw.AsSlice(),
		Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}}
	if err := ns.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("default route via %v in %s: %w", gw, ns.name, err)
	}
	return nil
}

func (l *Lab) build(ctx context.Context, p *plan) error {
	inet, err := l.newNetns(nsInet, true)
	if err != nil {
		return err
	}
	l.inet = inet
	gw1 := netip.PrefixFrom(nthAddr(publicHosts, 1), publicHosts.Bits())
	gw2 := netip.PrefixFrom(nthAddr(publicRouter, 1), publicRouter.Bits())
	if err := l.addBridge(inet, gw1, gw2); err != nil {
		return err
	}
	for _, np := range p.nets {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := l.buildNetwork(np)
		if err != nil {
			return fmt.Errorf("network %s: %w", np.spec.Name, err)
		}
		l.networks = append(l.networks, n)
		l.netByName[n.name] = n
	}
	for _, hp := range p.hosts {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := l.buildHost(hp)
		if err != nil {
			return fmt.Errorf("host %s: %w", hp.spec.Name, err)
		}
		l.hosts = append(l.hosts, h)
		l.hostByNm[h.name] = h
	}
	return nil
}

func (l *Lab) buildNetwork(np *netPlan) (*Network, error) {
	n := &Network{lab: l, name: np.spec.Name, preset: np.spec.NAT, lan: np.lan, gateway: np.gateway}
	if np.spec.NAT == Public {
		n.lan = publicHosts
		n.gateway = nthAddr(publicHosts, 1)
		n.bridgeNS = l.inet
		return n, nil
	}
	router, err := l.newNetns(nsNet+n.name, np.spec.NAT != Isolated)
	if err != nil {
		return nil, err
	}
	n.router, n.bridgeNS = router, router
	if np.spec.NAT == Isolated {
		// A switch, not a router: the bridge has no address and the hosts
		// no gateway, so nothing on this LAN has a route out.
		return n, l.addBridge(router)
	}
	if err := l.addBridge(router, netip.PrefixFrom(np.gateway, np.lan.Bits())); err != nil {
		return nil, err
	}
	upstream := l.inet
	if np.spec.NAT == CGNAT {
		carrier, err := l.newNetns(nsCarrier+n.name, true)
		if err != nil {
			return nil, err
		}
		n.carrier = carrier
		if err := l.addBridge(carrier, np.carrierLAN); err != nil {
			return nil, err
		}
		if _, err := l.wan(carrier, l.inet, np.carrierWAN, nthAddr(publicRouter, 1), Link{}); err != nil {
			return nil, err
		}
		if err := installNAT(carrier, l.prefix, l.dev(devWAN), np.carrierWAN.Addr(), Easy, nil); err != nil {
			return nil, err
		}
		upstream = carrier
		n.public = np.carrierWAN.Addr()
	} else {
		n.public = np.wan.Addr()
	}
	c, err := l.wan(router, upstream, np.wan, np.wanGW, np.spec.Uplink)
	if err != nil {
		return nil, err
	}
	n.uplink = c
	natPreset := np.spec.NAT
	if natPreset == CGNAT {
		natPreset = Easy // the home router; the carrier is easy too
	}
	if err := installNAT(router, l.prefix, l.dev(devWAN), np.wan.Addr(), natPreset, np.forwards); err != nil {
		return nil, err
	}
	return n, nil
}

// wan connects ns's WAN interface to the bridge of upstream and routes
// everything through gw.
func (l *Lab) wan(ns, upstream *netNS, addr netip.Prefix, gw netip.Addr, link Link) (*cable, error) {
	c, err := l.connect(ns, l.dev(devWAN), upstream, l.dev(devBridge), link)
	if err != nil {
		return nil, err
	}
	if err := addAddrs(ns, l.dev(devWAN), addr); err != nil {
		return nil, err
	}
	return c, addDefaultRoute(ns, l.dev(devWAN), gw)
}

func (l *Lab) buildHost(hp *hostPlan) (*Host, error) {
	ns, err := l.newNetns(nsHost+hp.spec.Name, false)
	if err != nil {
		return nil, err
	}
	h := &Host{lab: l, name: hp.spec.Name, ns: ns, gw: hp.gw}
	for i, ip := range hp.ifaces {
		n := l.netByName[ip.net.spec.Name]
		dev := l.dev(devHost + strconv.Itoa(i))
		c, err := l.connect(ns, dev, n.bridgeNS, l.dev(devBridge), ip.link)
		if err != nil {
			return nil, err
		}
		if err := addAddrs(ns, dev, ip.addr); err != nil {
			return nil, err
		}
		h.nics = append(h.nics, NIC{Name: dev, Network: n, Addr: ip.addr.Addr()})
		h.cables = append(h.cables, c)
	}
	h.network, h.addr, h.cable = h.nics[0].Network, hp.addr, h.cables[0]
	if hp.gw.IsValid() {
		if err := addDefaultRoute(ns, h.nics[hp.gwIface].Name, hp.gw); err != nil {
			return nil, err
		}
	}
	return h, nil
}
