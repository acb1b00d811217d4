package netlab

import (
	"context"
	"errors"
	"net"
	"net/netip"
)

// Host is one machine of the lab: a namespace with an interface on its
// network (and one on each network HostSpec.More names), an address on
// each and, behind a NAT, a default route via a network's router.
type Host struct {
	lab  *Lab
	name string
	ns   *netNS
	nics []NIC
	// cables[i] is nics[i]'s cable.
	cables []*cable
	// The first interface's network, address and cable.
	network *Network
	addr    netip.Prefix
	cable   *cable
	gw      netip.Addr
}

// NIC is one interface of a host.
type NIC struct {
	Name    string // the interface, e.g. jmlab-k3x9-e1
	Network *Network
	Addr    netip.Addr
}

// Name returns the host's name from the topology.
func (h *Host) Name() string { return h.name }

// Addr returns the host's own address (on its first network).
func (h *Host) Addr() netip.Addr { return h.addr.Addr() }

// Gateway returns the host's default gateway, or the zero Addr when no
// network of the host has one (an isolated network).
func (h *Host) Gateway() netip.Addr { return h.gw }

// Network returns the network the host is on (its first one).
func (h *Host) Network() *Network { return h.network }

// NICs returns the host's interfaces in topology order: its network's
// first, then one for each network of HostSpec.More.
func (h *Host) NICs() []NIC { return append([]NIC(nil), h.nics...) }

// AddrOn returns the host's address on the named network, or the zero
// Addr when the host is not on it.
func (h *Host) AddrOn(network string) netip.Addr {
	for _, n := range h.nics {
		if n.Network.name == network {
			return n.Addr
		}
	}
	return netip.Addr{}
}

// Netns returns the host's namespace name, for `ip netns exec NAME`.
func (h *Host) Netns() string { return h.ns.name }

// Interface returns the name of the host's (first) interface.
func (h *Host) Interface() string { return h.cable.aDev }

// Do runs f on an OS thread inside the host's namespace: sockets f creates
// belong to the host. f runs on another goroutine, so in a test it must
// return errors rather than call t.Fatal.
func (h *Host) Do(f func() error) error { return h.ns.do(f) }

// ListenPacket opens a packet socket on the host (see net.ListenPacket). The
// lab closes it at teardown if the caller has not.
func (h *Host) ListenPacket(network, address string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := h.Do(func() (err error) {
		pc, err = net.ListenPacket(network, address)
		return err
	})
	if err != nil {
		return nil, err
	}
	return pc, h.lab.track(pc)
}

// Listen opens a listening socket on the host (see net.Listen). The lab
// closes it at teardown if the caller has not.
func (h *Host) Listen(network, address string) (net.Listener, error) {
	var ln net.Listener
	err := h.Do(func() (err error) {
		ln, err = net.Listen(network, address)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ln, h.lab.track(ln)
}

// Dial connects from the host with d (nil for defaults). The lab closes the
// connection at teardown if the caller has not.
func (h *Host) Dial(ctx context.Context, d *net.Dialer, network, address string) (net.Conn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	var c net.Conn
	err := h.Do(func() (err error) {
		c, err = d.DialContext(ctx, network, address)
		return err
	})
	if err != nil {
		return nil, err
	}
	return c, h.lab.track(c)
}

// Partition cuts the host's cables (both directions, every interface)
// until Heal.
func (h *Host) Partition() error { return h.partition(true) }

// Heal undoes Partition.
func (h *Host) Heal() error { return h.partition(false) }

func (h *Host) partition(on bool) error {
	var errs []error
	for _, c := range h.cables {
		errs = append(errs, c.partition(h.lab.prefix, on))
	}
	return errors.Join(errs...)
}

// Network is one network of the lab. A public network is a set of hosts on
// the lab's internet; any other has a router namespace (a switch when
// isolated), and a cgnat network also a carrier namespace.
type Network struct {
	lab      *Lab
	name     string
	preset   Preset
	lan      netip.Prefix
	gateway  netip.Addr
	public   netip.Addr
	router   *netNS // nil for public networks
	carrier  *netNS // cgnat only
	bridgeNS *netNS // where the hosts' cables end
	uplink   *cable // nil for public and isolated networks
}

// Name returns the network's name from the topology.
func (n *Network) Name() string { return n.name }

// Preset returns the network's NAT preset.
func (n *Network) Preset() Preset { return n.preset }

// Subnet returns the network's LAN (198.51.100.0/24 for public networks).
func (n *Network) Subnet() netip.Prefix { return n.lan }

// Gateway returns the hosts' default gateway; zero when isolated.
func (n *Network) Gateway() netip.Addr { return n.gateway }

// PublicAddr returns the address the internet sees the network's hosts
// come from: the router's WAN address, or for cgnat the carrier's. It is
// zero for public networks (hosts have their own) and isolated ones.
func (n *Network) PublicAddr() netip.Addr { return n.public }

// RouterNetns returns the router's namespace name, or "" for a public network.
func (n *Network) RouterNetns() string {
	if n.router == nil {
		return ""
	}
	return n.router.name
}

// Partition cuts the network's uplink until Heal; the LAN keeps working.
func (n *Network) Partition() error {
	if n.uplink == nil {
		return nil
	}
	return n.uplink.partition(n.lab.prefix, true)
}

// Heal undoes Partition.
func (n *Network) Heal() error {
	if n.uplink == nil {
		return nil
	}
	return n.uplink.partition(n.lab.prefix, false)
}
