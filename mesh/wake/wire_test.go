package wake_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
)

// onThread runs f on a locked OS thread of its own and puts the thread
// back in its namespace after; a thread that cannot go back stays locked
// and dies with its goroutine, so no other goroutine runs in a test
// namespace by accident.
func onThread(f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			done <- err
			return
		}
		defer orig.Close()
		ferr := f()
		if err := netns.Set(orig); err != nil {
			done <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		done <- ferr
	}()
	return <-done
}

func inNetns(h netns.NsHandle, f func() error) error {
	return onThread(func() error {
		if err := netns.Set(h); err != nil {
			return err
		}
		return f()
	})
}

var wireRuns atomic.Int32

// newNetns creates the named namespace, removed by exact name at cleanup.
func newNetns(t *testing.T, name string) netns.NsHandle {
	t.Helper()
	err := onThread(func() error {
		h, err := netns.NewNamed(name)
		if err != nil {
			return err
		}
		return h.Close()
	})
	if err != nil {
		t.Fatalf("creating namespace %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("removing namespace %s: %v", name, err)
		}
	})
	h, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// wireLink is two namespaces joined by a veth pair: a (the waker's side,
// "wka", 10.99.N.1/24, default route via .254) and b (the sleeping host,
// "wkb", 10.99.N.2/24).
type wireLink struct {
	a, b         netns.NsHandle
	macA, macB   net.HardwareAddr
	subnet       netip.Prefix
	ipA, ipB, gw netip.Addr
}

func newWireLink(t *testing.T) *wireLink {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	run := wireRuns.Add(1)
	base := fmt.Sprintf("jmwk-%d-%d", os.Getpid(), run)
	n := byte((os.Getpid() + int(run)) % 250)
	l := &wireLink{
		a: newNetns(t, base+"-a"), b: newNetns(t, base+"-b"),
		macA: net.HardwareAddr{0x02, 0x99, 0, 0, n, 1}, macB: net.HardwareAddr{0x02, 0x99, 0, 0, n, 2},
		subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 99, n, 0}), 24),
		ipA:    netip.AddrFrom4([4]byte{10, 99, n, 1}), ipB: netip.AddrFrom4([4]byte{10, 99, n, 2}),
		gw: netip.AddrFrom4([4]byte{10, 99, n, 254}),
	}
	ha, err := netlink.NewHandleAt(l.a)
	if err != nil {
		t.Fatal(err)
	}
	defer ha.Close()
	hb, err := netlink.NewHandleAt(l.b)
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	veth := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: "wka", HardwareAddr: l.macA},
		PeerName:  "wkb", PeerHardwareAddr: l.macB,
	}
	if err := ha.LinkAdd(veth); err != nil {
		t.Fatalf("veth: %v", err)
	}
	peerEnd, err := ha.LinkByName("wkb")
	if err != nil {
		t.Fatal(err)
	}
	if err := ha.LinkSetNsFd(peerEnd, int(l.b)); err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct {
		h    *netlink.Handle
		name string
		ip   netip.Addr
	}{{ha, "wka", l.ipA}, {hb, "wkb", l.ipB}} {
		link, err := side.h.LinkByName(side.name)
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := netlink.ParseAddr(netip.PrefixFrom(side.ip, 24).String())
		if err := side.h.AddrAdd(link, addr); err != nil {
			t.Fatal(err)
		}
		if err := side.h.LinkSetUp(link); err != nil {
			t.Fatal(err)
		}
		lo, err := side.h.LinkByName("lo")
		if err == nil {
			_ = side.h.LinkSetUp(lo)
		}
	}
	linkA, _ := ha.LinkByName("wka")
	if err := ha.RouteAdd(&netlink.Route{LinkIndex: linkA.Attrs().Index, Gw: net.IP(l.gw.AsSlice())}); err != nil {
		t.Fatalf("default route: %v", err)
	}
	// The carrier comes up once both ends are up.
	eventually(t, "the veth pair up", func() bool {
		la, errA := ha.LinkByName("wka")
		lb, errB := hb.LinkByName("wkb")
		return errA == nil && errB == nil && la.Attrs().OperState == netlink.OperUp && lb.Attrs().OperState == netlink.OperUp
	})
	return l
}

// sniffer is an AF_PACKET socket that sees every frame on "wkb" in b.
type sniffer struct{ fd int }

func newSniffer(t *testing.T, ns netns.NsHandle, ifname string) *sniffer {
	t.Helper()
	s := &sniffer{fd: -1}
	err := inNetns(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		all := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, all)
		if err != nil {
			return err
		}
		s.fd = fd
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			return err
		}
		tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if s.fd >= 0 {
		t.Cleanup(func() { unix.Close(s.fd) })
	}
	if err != nil {
		t.Fatalf("packet socket: %v", err)
	}
	return s
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// magicFrames reads frames until every one of want was seen (or a generous
// deadline passes) and returns what it saw: "udp DST:PORT" for a UDP
// datagram holding a magic packet for mac with password, "ether 0x0842"
// for such a raw frame. Frames must come from src.
func (s *sniffer) magicFrames(t *testing.T, src, mac net.HardwareAddr, password []byte, want []string) []string {
	t.Helper()
	var seen []string
	buf := make([]byte, 2048)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		done := true
		for _, w := range want {
			done = done && slices.Contains(seen, w)
		}
		if done {
			break
		}
		n, _, err := unix.Recvfrom(s.fd, buf, 0)
		if err != nil {
			continue // the receive timeout: look at the deadline
		}
		fr := buf[:n]
		if n < 14 || !bytes.Equal(fr[6:12], src) {
			continue
		}
		var payload []byte
		var what string
		switch binary.BigEndian.Uint16(fr[12:14]) {
		case wake.EtherType:
			if !bytes.Equal(fr[:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}) {
				t.Errorf("0x0842 frame to %x, not broadcast", fr[:6])
			}
			payload, what = fr[14:], "ether 0x0842"
		case 0x0800:
			ip := fr[14:]
			if len(ip) < 20 || ip[9] != unix.IPPROTO_UDP {
				continue
			}
			ihl := int(ip[0]&0x0f) * 4
			if len(ip) < ihl+8 {
				continue
			}
			udp := ip[ihl:]
			dst := netip.AddrFrom4([4]byte(ip[16:20]))
			what = fmt.Sprintf("udp %s:%d", dst, binary.BigEndian.Uint16(udp[2:4]))
			payload = udp[8:]
		default:
			continue
		}
		gotMAC, gotPW, ok := wake.ParseMagicPacket(payload)
		if !ok || !bytes.Equal(gotMAC, mac) || !bytes.Equal(gotPW, password) {
			t.Errorf("%s: not the magic packet for %s/%x: %x", what, mac, password, payload)
			continue
		}
		if !slices.Contains(seen, what) {
			seen = append(seen, what)
		}
	}
	return seen
}

// TestSendMagicOnTheWire: SendMagic on one end of a veth pair; the other
// end sees the magic packet as UDP broadcasts (limited and directed, ports
// 9 and 7) and as an 0x0842 frame.
func TestSendMagicOnTheWire(t *testing.T) {
	t.Run("SO_BINDTODEVICE", testSendMagicOnTheWire)
	t.Run("IP_PKTINFO", func(t *testing.T) {
		defer wake.SetBindToDevice(wake.SetBindToDevice(false))
		testSendMagicOnTheWire(t)
	})
}

// addDecoy gives a's namespace a second interface, "wkd" (a veth pair
// within a; the kernel here has no dummy links), that holds the preferred
// default route: a packet not pinned to "wka" leaves
// through it.
func addDecoy(t *testing.T, l *wireLink) {
	t.Helper()
	h, err := netlink.NewHandleAt(l.a)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wkd"}, PeerName: "wke"}); err != nil {
		t.Fatalf("decoy veth: %v", err)
	}
	if e, err := h.LinkByName("wke"); err != nil || h.LinkSetUp(e) != nil {
		t.Fatalf("decoy peer end: %v", err)
	}
	d, err := h.LinkByName("wkd")
	if err != nil {
		t.Fatal(err)
	}
	addr, _ := netlink.ParseAddr("10.98.0.1/24")
	if err := h.AddrAdd(d, addr); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(d); err != nil {
		t.Fatal(err)
	}
	// Replace a's default route by a worse one, and add the decoy's.
	wka, _ := h.LinkByName("wka")
	if err := h.RouteDel(&netlink.Route{LinkIndex: wka.Attrs().Index, Gw: net.IP(l.gw.AsSlice())}); err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: wka.Attrs().Index, Gw: net.IP(l.gw.AsSlice()), Priority: 100}); err != nil {
		t.Fatal(err)
	}
	if err := h.RouteAdd(&netlink.Route{LinkIndex: d.Attrs().Index, Gw: net.ParseIP("10.98.0.254"), Priority: 10}); err != nil {
		t.Fatal(err)
	}
}

func testSendMagicOnTheWire(t *testing.T) {
	l := newWireLink(t)
	addDecoy(t, l)
	sn := newSniffer(t, l.b, "wkb")
	password := []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab}
	bcast := netip.AddrFrom4([4]byte{10, 99, l.subnet.Addr().As4()[2], 255})
	wantSent := []string{
		"wka udp 255.255.255.255:9", "wka udp 255.255.255.255:7",
		fmt.Sprintf("wka udp %s:9", bcast), fmt.Sprintf("wka udp %s:7", bcast),
		"wka ether 0x0842",
	}
	var sent []string
	err := inNetns(l.a, func() error {
		ifi, err := wake.InterfaceToward(l.gw)
		if err != nil {
			return err
		}
		if ifi.Name != "wka" {
			return fmt.Errorf("interface toward %s: %s", l.gw, ifi.Name)
		}
		if def, err := wake.DefaultRouteInterface(); err != nil || def.Name != "wkd" {
			return fmt.Errorf("default route interface: %v, %v", def, err)
		}
		if _, err := wake.InterfaceToward(netip.MustParseAddr("192.0.2.1")); !errors.Is(err, wake.ErrNoInterface) {
			return fmt.Errorf("interface toward an address of no subnet: %v", err)
		}
		sent, err = wake.SendMagic(context.Background(), ifi, l.macB, password)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(sent, wantSent) {
		t.Fatalf("sent %q, want %q", sent, wantSent)
	}
	wantSeen := []string{"udp 255.255.255.255:9", "udp 255.255.255.255:7", fmt.Sprintf("udp %s:9", bcast), fmt.Sprintf("udp %s:7", bcast), "ether 0x0842"}
	seen := sn.magicFrames(t, l.macA, l.macB, password, wantSeen)
	for _, w := range wantSeen {
		if !slices.Contains(seen, w) {
			t.Errorf("the other end did not see %s (saw %q)", w, seen)
		}
	}
}

// TestWakerSendsOnTheWire: a Waker's default choice of interface (toward
// the body's gateway, else the default route) puts a body's magic packets
// on the right link.
func TestWakerSendsOnTheWire(t *testing.T) {
	l := newWireLink(t)
	sn := newSniffer(t, l.b, "wkb")
	w := wake.NewWaker(wake.WakerConfig{Site: newID(t)})
	for _, gw := range []string{l.gw.String(), "192.0.2.1" /* no subnet holds it: the default route */} {
		b := &pb.WakeBody{Macs: []string{l.macB.String()}, GatewayIp: gw, Secureon: []byte{1, 2, 3, 4}}
		var sent []string
		err := inNetns(l.a, func() error {
			var err error
			sent, err = w.Send(context.Background(), b, nil)
			return err
		})
		if err != nil || len(sent) != 5 || sent[0] != "wka udp 255.255.255.255:9" {
			t.Fatalf("gateway %s: sent %q, %v", gw, sent, err)
		}
		seen := sn.magicFrames(t, l.macA, l.macB, []byte{1, 2, 3, 4}, []string{"udp 255.255.255.255:9", "ether 0x0842"})
		if len(seen) < 2 {
			t.Fatalf("gateway %s: the other end saw %q", gw, seen)
		}
	}
}

// onDoomedThread runs f inside ns on a locked thread that is never given
// back: f may drop the thread's capabilities.
func onDoomedThread(ns netns.NsHandle, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
		if err := netns.Set(ns); err != nil {
			done <- err
			return
		}
		done <- f()
	}()
	return <-done
}

// dropNetRaw removes CAP_NET_RAW from the calling thread's effective set,
// as for a peer run without it.
func dropNetRaw() error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return err
	}
	data[unix.CAP_NET_RAW/32].Effective &^= 1 << (unix.CAP_NET_RAW % 32)
	return unix.Capset(&hdr, &data[0])
}

// TestSendMagicWithoutRawSockets: without CAP_NET_RAW the 0x0842 frame is
// skipped, not an error, and the UDP broadcasts still leave on the right
// interface.
func TestSendMagicWithoutRawSockets(t *testing.T) {
	l := newWireLink(t)
	sn := newSniffer(t, l.b, "wkb")
	var sent []string
	err := onDoomedThread(l.a, func() error {
		if err := dropNetRaw(); err != nil {
			return err
		}
		if _, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM, 0); !errors.Is(err, unix.EPERM) {
			return fmt.Errorf("CAP_NET_RAW still held: packet socket %v", err)
		}
		ifi, err := net.InterfaceByName("wka")
		if err != nil {
			return err
		}
		sent, err = wake.SendMagic(context.Background(), ifi, l.macB, nil)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(sent) != 4 || slices.Contains(sent, "wka ether 0x0842") {
		t.Fatalf("sent %q, want the 4 UDP broadcasts only", sent)
	}
	want := []string{"udp 255.255.255.255:9", "udp 255.255.255.255:7"}
	if seen := sn.magicFrames(t, l.macA, l.macB, nil, want); len(seen) < 2 {
		t.Fatalf("the other end saw %q", seen)
	}
}
