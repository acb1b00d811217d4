package netlab

import (
	"errors"
	"fmt"
	"time"

	"github.com/vishvananda/netlink"
)

// cable joins an interface of one namespace (end a, which gets the
// addresses) to a bridge in another (end b, a bridge port). Without latency
// it is a veth pair; with latency it is two TAP devices joined by a wire in
// this process. Either way it is Ethernet, so ARP, broadcasts and
// Wake-on-LAN magic packets cross it like a real cable.
type cable struct {
	a, b       *netNS
	aDev, bDev string
	link       Link
	wire       *wire
}

// TBF sizing: a burst of 5 ms at the rate (at least a few frames) and a
// queue of 50 ms, like a modest router buffer.
const (
	tbfBurstTime = 5 * time.Millisecond
	tbfQueueTime = 50 * time.Millisecond
	tbfMinBurst  = 4 * 1514
)

func (l *Lab) connect(a *netNS, aDev string, b *netNS, bridge string, link Link) (*cable, error) {
	bDev, err := l.portName()
	if err != nil {
		return nil, err
	}
	c := &cable{a: a, b: b, aDev: aDev, bDev: bDev, link: link}
	if link.delayed() {
		fa, err := openTAP(a, aDev)
		if err != nil {
			return nil, err
		}
		fb, err := openTAP(b, bDev)
		if err != nil {
			fa.Close()
			return nil, err
		}
		c.wire = newWire(fa, fb, link)
		l.mu.Lock()
		closed := l.closed
		if !closed {
			l.wires = append(l.wires, c.wire)
		}
		l.mu.Unlock()
		if closed {
			return nil, errors.Join(ErrClosed, c.wire.Close())
		}
	} else {
		veth := &netlink.Veth{
			LinkAttrs:     netlink.LinkAttrs{Name: aDev},
			PeerName:      bDev,
			PeerNamespace: netlink.NsFd(int(b.h)),
		}
		if err := a.nl.LinkAdd(veth); err != nil {
			return nil, fmt.Errorf("veth %s/%s: %w", aDev, bDev, err)
		}
	}
	if err := setMasterUp(b, bDev, bridge); err != nil {
		return nil, err
	}
	if err := setUp(a, aDev); err != nil {
		return nil, err
	}
	for _, end := range []struct {
		ns  *netNS
		dev string
	}{{a, aDev}, {b, bDev}} {
		if err := linkChain(end.ns, l.prefix, end.dev, link.Loss); err != nil {
			return nil, err
		}
		if err := addTBF(end.ns, end.dev, link.Rate); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// partition cuts (or heals) the cable at both ends' ingress.
func (c *cable) partition(prefix string, on bool) error {
	return errors.Join(
		setPartition(c.a, prefix, c.aDev, on),
		setPartition(c.b, prefix, c.bDev, on),
	)
}

func setUp(ns *netNS, dev string) error {
	lk, err := ns.nl.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", dev, ns.name, err)
	}
	if err := ns.nl.LinkSetUp(lk); err != nil {
		return fmt.Errorf("setting %s up in %s: %w", dev, ns.name, err)
	}
	return nil
}

func setMasterUp(ns *netNS, dev, bridge string) error {
	lk, err := ns.nl.LinkByName(dev)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", dev, ns.name, err)
	}
	br, err := ns.nl.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("%s in %s: %w", bridge, ns.name, err)
	}
	if err := ns.nl.LinkSetMaster(lk, br); err != nil {
		return fmt.Errorf("adding %s to %s in %s: %w", dev, bridge, ns.name, err)
	}
	return setUp(ns, dev)
}

// addTBF limits dev's egress to rate bits per second; zero does nothing.
func addTBF(ns *netNS, dev string, rate uint64) error {
	if rate == 0 {
		return nil
	}
	lk, err := ns.nl.LinkByName(dev)
	if err != nil {
		return err
	}
	bytesPerSec := rate / 8
	burst := max(uint32(float64(bytesPerSec)*tbfBurstTime.Seconds()), tbfMinBurst)
	limit := max(uint32(float64(bytesPerSec)*tbfQueueTime.Seconds()), 2*burst)
	q := &netlink.Tbf{
		QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: lk.Attrs().Index,
			Handle:    netlink.MakeHandle(1, 0),
			Parent:    netlink.HANDLE_ROOT,
		},
		Rate:   bytesPerSec,
		Buffer: netlink.Xmittime(bytesPerSec, burst),
		Limit:  limit,
	}
	if err := ns.nl.QdiscAdd(q); err != nil {
		return fmt.Errorf("TBF %d bit/s on %s in %s: %w", rate, dev, ns.name, err)
	}
	return nil
}
