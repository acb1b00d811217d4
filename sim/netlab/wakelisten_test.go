package netlab_test

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
	"github.com/jumpmesh/jumpmesh/sim/netlab"
	"github.com/jumpmesh/jumpmesh/sim/netlab/labtest"
)

// TestWakeListener: a host's wake listener is woken by a real magic packet
// for its MAC that a neighbour broadcasts on the LAN — as a UDP datagram to
// port 9 or 7 or as an EtherType 0x0842 frame, across a veth and a delayed
// (TAP) cable — and only with the right SecureOn password when one is set.
// Packets for another MAC, with a wrong password, to another port, or sent
// by the host itself do not wake it; the listener records who sent what,
// with the kernel's arrival time.
func TestWakeListener(t *testing.T) {
	lab := labtest.New(t, netlab.Topology{
		Networks: []netlab.NetworkSpec{{Name: "lan", NAT: netlab.Easy}},
		Hosts: []netlab.HostSpec{
			{Name: "sleeper", Network: "lan"},
			{Name: "waker", Network: "lan", Link: netlab.Link{Latency: time.Millisecond}},
			{Name: "other", Network: "lan"},
		},
	})
	sleeper, waker := lab.Host("sleeper"), lab.Host("waker")
	mac, err := sleeper.MAC()
	if err != nil || len(mac) != 6 {
		t.Fatalf("MAC %v %v", mac, err)
	}
	wakerMAC, err := waker.MAC()
	if err != nil || bytes.Equal(wakerMAC, mac) {
		t.Fatalf("waker MAC %v %v (sleeper %v)", wakerMAC, err, mac)
	}
	otherMAC, _ := lab.Host("other").MAC()
	password := []byte{1, 2, 3, 4, 5, 6}

	t.Run("udp", func(t *testing.T) {
		l, err := sleeper.ListenWake(netlab.WakeConfig{})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		sent, err := waker.ListenWake(netlab.WakeConfig{}) // sees what the waker sends
		if err != nil {
			t.Fatal(err)
		}
		defer sent.Close()
		// Another host's MAC, and the right MAC to a port no card listens on.
		sendUDP(t, waker, "255.255.255.255:9", wake.MagicPacket(otherMAC, nil))
		sendUDP(t, waker, "255.255.255.255:4000", wake.MagicPacket(mac, nil))
		waitPackets(t, l, 1)
		assertAsleep(t, l)
		before := time.Now()
		sendUDP(t, waker, "255.255.255.255:7", wake.MagicPacket(mac, nil))
		p := waitWake(t, l)
		if p.Via != "udp" || p.Port != 7 || p.SrcIP != waker.Addr() || !bytes.Equal(p.MAC, mac) || p.Outgoing ||
			!bytes.Equal(p.SrcMAC, wakerMAC) || p.At.Before(before.Add(-time.Second)) || p.At.After(time.Now()) {
			t.Errorf("woken by %+v (sent after %v)", p, before)
		}
		if got := l.Packets(); len(got) != 2 {
			t.Errorf("recorded %d packets, want 2 (port 4000 is not a wake port): %v", len(got), got)
		}
		// The waker's own listener saw its packets go out and was not woken.
		out := waitPackets(t, sent, 2)
		for _, p := range out {
			if !p.Outgoing {
				t.Errorf("waker recorded %v as received", p)
			}
		}
		assertAsleep(t, sent)
	})

	t.Run("secureon", func(t *testing.T) {
		l, err := sleeper.ListenWake(netlab.WakeConfig{Password: password})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		sendUDP(t, waker, "255.255.255.255:9", wake.MagicPacket(mac, nil))
		sendUDP(t, waker, netip.AddrPortFrom(broadcast(lab.Network("lan").Subnet()), 9).String(), wake.MagicPacket(mac, []byte{9, 9, 9, 9, 9, 9}))
		sendEther(t, waker, wake.MagicPacket(mac, []byte{1, 2, 3, 4}))
		waitPackets(t, l, 3)
		assertAsleep(t, l)
		sendEther(t, waker, wake.MagicPacket(mac, password))
		p := waitWake(t, l)
		if p.Via != "ether" || !bytes.Equal(p.Password, password) || !bytes.Equal(p.SrcMAC, wakerMAC) || p.DstMAC.String() != "ff:ff:ff:ff:ff:ff" {
			t.Errorf("woken by %+v", p)
		}
		if err := l.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
	})

	t.Run("bad password length", func(t *testing.T) {
		if _, err := sleeper.ListenWake(netlab.WakeConfig{Password: []byte{1, 2, 3}}); err == nil {
			t.Error("a 3-byte password accepted")
		}
	})
}

// broadcast is the subnet's broadcast address.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrFrom4(a)
}

// sendUDP broadcasts payload from h to addr (Go sets SO_BROADCAST on UDP
// sockets).
func sendUDP(t *testing.T, h *netlab.Host, addr string, payload []byte) {
	t.Helper()
	pc, err := h.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	to, err := net.ResolveUDPAddr("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pc.WriteTo(payload, to); err != nil {
		t.Fatalf("sending to %s: %v", addr, err)
	}
}

// sendEther sends payload from h as a broadcast frame of EtherType 0x0842.
func sendEther(t *testing.T, h *netlab.Host, payload []byte) {
	t.Helper()
	err := h.Do(func() error {
		ifi, err := net.InterfaceByName(h.Interface())
		if err != nil {
			return err
		}
		proto := int(wake.EtherType>>8 | (wake.EtherType&0xff)<<8)
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		frame := append(bytes.Repeat([]byte{0xff}, 6), ifi.HardwareAddr...)
		frame = binary.BigEndian.AppendUint16(frame, wake.EtherType)
		frame = append(frame, payload...)
		to := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Halen: 6, Protocol: uint16(proto)}
		copy(to.Addr[:], bytes.Repeat([]byte{0xff}, 6))
		return unix.Sendto(fd, frame, 0, to)
	})
	if err != nil {
		t.Fatalf("sending a 0x0842 frame from %s: %v", h.Name(), err)
	}
}

const wakeTestWait = 10 * time.Second

// waitPackets waits until l has recorded at least n packets.
func waitPackets(t *testing.T, l *netlab.WakeListener, n int) []netlab.WakePacket {
	t.Helper()
	var got []netlab.WakePacket
	coordinatortest.Eventually(t, wakeTestWait, fmt.Sprintf("%d packets recorded", n), func() bool {
		got = l.Packets()
		return len(got) >= n
	})
	return got
}

func waitWake(t *testing.T, l *netlab.WakeListener) netlab.WakePacket {
	t.Helper()
	select {
	case <-l.Woken():
	case <-time.After(wakeTestWait):
		t.Fatalf("not woken after %v; packets: %v", wakeTestWait, l.Packets())
	}
	p, ok := l.Wake()
	if !ok {
		t.Fatal("Woken closed but no wake packet")
	}
	return p
}

func assertAsleep(t *testing.T, l *netlab.WakeListener) {
	t.Helper()
	select {
	case <-l.Woken():
		p, _ := l.Wake()
		t.Fatalf("woken by %v", p)
	default:
	}
}

// TestParseWakeFrame: the frame parser takes a magic packet from a 0x0842
// frame or a UDP datagram to port 9 or 7 only, and respects the IP and UDP
// lengths (Ethernet padding is not a password).
func TestParseWakeFrame(t *testing.T) {
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 1}
	eth := func(typ uint16, payload []byte) []byte {
		f := append(bytes.Repeat([]byte{0xff}, 6), 2, 0, 0, 0, 0, 2)
		f = binary.BigEndian.AppendUint16(f, typ)
		return append(f, payload...)
	}
	udp := func(port uint16, payload []byte, pad int) []byte {
		ip := make([]byte, 20+8)
		ip[0], ip[9] = 0x45, unix.IPPROTO_UDP
		binary.BigEndian.PutUint16(ip[2:], uint16(28+len(payload)))
		copy(ip[12:], []byte{192, 168, 1, 11})
		copy(ip[16:], []byte{255, 255, 255, 255})
		binary.BigEndian.PutUint16(ip[22:], port)
		binary.BigEndian.PutUint16(ip[24:], uint16(8+len(payload)))
		return eth(0x0800, append(append(ip, payload...), make([]byte, pad)...))
	}
	magic := wake.MagicPacket(mac, nil)
	for _, c := range []struct {
		name  string
		frame []byte
		ok    bool
		pass  int
	}{
		{"ether", eth(wake.EtherType, magic), true, 0},
		{"ether with password", eth(wake.EtherType, wake.MagicPacket(mac, []byte{1, 2, 3, 4, 5, 6})), true, 6},
		{"udp 9", udp(9, magic, 0), true, 0},
		{"udp 7 padded", udp(7, magic, 6), true, 0},
		{"udp 9 with 4-byte password", udp(9, wake.MagicPacket(mac, []byte{1, 2, 3, 4}), 0), true, 4},
		{"udp 40000", udp(40000, magic, 0), false, 0},
		{"ipv6", eth(0x86dd, magic), false, 0},
		{"truncated", udp(9, magic, 0)[:80], false, 0},
		{"short", []byte{1, 2, 3}, false, 0},
		{"no magic", eth(wake.EtherType, bytes.Repeat([]byte{0xff}, 102)), false, 0},
	} {
		p, ok := netlab.ParseWakeFrame(c.frame)
		if ok != c.ok || ok && (!bytes.Equal(p.MAC, mac) || len(p.Password) != c.pass) {
			t.Errorf("%s: %+v %v", c.name, p, ok)
		}
	}
}

// FuzzParseWakeFrame: no frame makes the parser panic, and whatever it
// accepts names a 6-byte MAC.
func FuzzParseWakeFrame(f *testing.F) {
	f.Add(append(append(bytes.Repeat([]byte{0xff}, 12), 0x08, 0x42), wake.MagicPacket(net.HardwareAddr{2, 0, 0, 0, 0, 1}, nil)...))
	f.Fuzz(func(t *testing.T, frame []byte) {
		if p, ok := netlab.ParseWakeFrame(frame); ok && len(p.MAC) != 6 {
			t.Fatalf("MAC %v", p.MAC)
		}
	})
}
