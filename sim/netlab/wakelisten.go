package netlab

// A sleeping machine's network card: the lab's stand-in for Wake-on-LAN.

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jumpmesh/jumpmesh/mesh/wake"
)

// MAC returns the hardware address of the host's (first) interface: the
// one a peer on the host reports as its default-route NIC.
func (h *Host) MAC() (net.HardwareAddr, error) {
	macs, err := h.macs()
	if err != nil {
		return nil, err
	}
	return macs[h.cable.aDev], nil
}

// MACs returns the hardware addresses of the host's interfaces, in the
// order of NICs.
func (h *Host) MACs() ([]net.HardwareAddr, error) {
	macs, err := h.macs()
	if err != nil {
		return nil, err
	}
	out := make([]net.HardwareAddr, len(h.nics))
	for i, n := range h.nics {
		out[i] = macs[n.Name]
	}
	return out, nil
}

// macs returns the hardware address of each of the host's interfaces.
func (h *Host) macs() (map[string]net.HardwareAddr, error) {
	out := map[string]net.HardwareAddr{}
	err := h.Do(func() error {
		for _, n := range h.nics {
			i, err := net.InterfaceByName(n.Name)
			if err != nil {
				return err
			}
			out[n.Name] = i.HardwareAddr
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading the MACs of %s: %w", h.name, err)
	}
	return out, nil
}

// WakePacket is one Wake-on-LAN magic packet seen on a host's interface.
type WakePacket struct {
	// At is when the kernel took the frame off the wire (or, outgoing,
	// handed it to the cable).
	At time.Time
	// Outgoing is a packet the host sent; otherwise the host received it.
	Outgoing  bool
	Interface string
	// Via is "udp" (a datagram to port 9 or 7) or "ether" (a frame of
	// EtherType 0x0842).
	Via            string
	Port           int // UDP destination port
	SrcMAC, DstMAC net.HardwareAddr
	SrcIP, DstIP   netip.Addr // UDP only
	// MAC is the address the magic packet names, Password its SecureOn
	// password (none, 4 or 6 bytes).
	MAC      net.HardwareAddr
	Password []byte
}

// String describes the packet: "udp 192.168.2.11 → 255.255.255.255:9 for
// 02:…:01 (SecureOn 01-02-03-04-05-06)".
func (p WakePacket) String() string {
	var b bytes.Buffer
	if p.Via == "udp" {
		fmt.Fprintf(&b, "udp %s → %s:%d", p.SrcIP, p.DstIP, p.Port)
	} else {
		fmt.Fprintf(&b, "ether 0x0842 %s → %s", p.SrcMAC, p.DstMAC)
	}
	fmt.Fprintf(&b, " for %s", p.MAC)
	if len(p.Password) > 0 {
		fmt.Fprintf(&b, " (SecureOn %s)", wake.FormatPassword(p.Password))
	}
	return b.String()
}

// WakeConfig sets up a wake listener.
type WakeConfig struct {
	// Password is the SecureOn password the host's card was given: a magic
	// packet wakes it only if it carries exactly this. None (nil): any
	// magic packet for the host's MAC wakes it, with or without one.
	Password []byte
}

// WakeListener watches a host's interfaces for magic packets, as the card
// of a sleeping machine does: a magic packet that reaches the host (not one
// it sends), names one of its MACs and carries the right SecureOn password
// wakes it. It also records every magic packet that crosses the host's
// interfaces in either direction, so a test can tell who sent what.
type WakeListener struct {
	fd       int
	password []byte
	ifnames  map[int]string  // the host's interfaces by index
	macs     map[string]bool // the host's MACs, as strings
	woken    chan struct{}   // closed by the first wake
	stop     chan struct{}   // closed by Close
	done     chan struct{}   // closed when the reader has ended
	once     sync.Once
	mu       sync.Mutex
	wake     WakePacket
	awake    bool
	packets  []WakePacket
	dropped  int // packets past maxWakePackets
	err      error
	closeErr error
}

// maxWakePackets bounds the record of a listener: a waker sends a handful
// per MAC and attempt.
const maxWakePackets = 1024

// wakeSnap is the most of a frame the listener reads: a magic packet with
// its headers fits many times over.
const wakeSnap = 2048

// ListenWake starts watching the host's interfaces for magic packets until
// the listener or the lab is closed. It needs CAP_NET_RAW (the lab is root).
func (h *Host) ListenWake(cfg WakeConfig) (*WakeListener, error) {
	switch len(cfg.Password) {
	case 0, 4, 6:
	default:
		return nil, fmt.Errorf("wake listener on %s: a SecureOn password is 4 or 6 bytes, not %d", h.name, len(cfg.Password))
	}
	macs, err := h.macs()
	if err != nil {
		return nil, err
	}
	w := &WakeListener{password: append([]byte(nil), cfg.Password...), ifnames: map[int]string{}, macs: map[string]bool{},
		woken: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	for _, m := range macs {
		w.macs[m.String()] = true
	}
	err = h.Do(func() error {
		for _, n := range h.nics {
			i, err := net.InterfaceByName(n.Name)
			if err != nil {
				return err
			}
			w.ifnames[i.Index] = n.Name
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		w.fd = fd
		// The kernel keeps only what may be a magic packet: a busy peer's
		// sessions never reach this process.
		prog := unix.SockFprog{Len: uint16(len(wakeFilter)), Filter: &wakeFilter[0]}
		if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &prog); err != nil {
			return fmt.Errorf("packet filter: %w", err)
		}
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			return fmt.Errorf("packet timestamps: %w", err)
		}
		bind := 0
		if len(h.nics) == 1 {
			for i := range w.ifnames {
				bind = i
			}
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: bind}); err != nil {
			return fmt.Errorf("binding the packet socket: %w", err)
		}
		tv := unix.NsecToTimeval(int64(wakeReadWake))
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	})
	if err != nil {
		if w.fd > 0 {
			unix.Close(w.fd)
		}
		return nil, fmt.Errorf("wake listener on %s: %w", h.name, err)
	}
	go w.run()
	if err := h.lab.track(w); err != nil {
		return nil, err
	}
	return w, nil
}

// wakeReadWake bounds how long Close waits for the reader to notice.
const wakeReadWake = 100 * time.Millisecond

// wakeFilter is a classic BPF program: accept an Ethernet frame of
// EtherType 0x0842, or an unfragmented IPv4 UDP datagram to port 9 or 7.
var wakeFilter = []unix.SockFilter{
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 12},                     // 0: EtherType
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 9, K: wake.EtherType}, // 1: → accept
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jf: 9, K: 0x0800},         // 2: IPv4, else drop
	{Code: unix.BPF_LD | unix.BPF_B | unix.BPF_ABS, K: 23},                     // 3: IP protocol
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jf: 7, K: unix.IPPROTO_UDP},
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_ABS, K: 20},              // 5: flags, fragment offset
	{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, Jt: 5, K: 0x1fff}, // 6: a later fragment → drop
	{Code: unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH, K: 14},             // 7: X = IP header length
	{Code: unix.BPF_LD | unix.BPF_H | unix.BPF_IND, K: 16},              // 8: UDP destination port
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jt: 1, K: 9},       // 9: → accept
	{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, Jf: 1, K: 7},       // 10: → accept, else drop
	{Code: unix.BPF_RET | unix.BPF_K, K: wakeSnap},                      // 11: accept
	{Code: unix.BPF_RET | unix.BPF_K, K: 0},                             // 12: drop
}

// Woken is closed when a magic packet wakes the host.
func (w *WakeListener) Woken() <-chan struct{} { return w.woken }

// Wake returns the packet that woke the host, if one has.
func (w *WakeListener) Wake() (WakePacket, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.wake, w.awake
}

// Packets returns every magic packet seen so far, in both directions and
// for any MAC, in the order they came (at most maxWakePackets).
func (w *WakeListener) Packets() []WakePacket {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]WakePacket(nil), w.packets...)
}

// Close stops the listener and reports the first error its reader met.
// It is idempotent.
func (w *WakeListener) Close() error {
	w.once.Do(func() {
		close(w.stop)
		<-w.done
		w.mu.Lock()
		w.closeErr = w.err
		w.mu.Unlock()
	})
	return w.closeErr
}

// run reads frames until Close.
func (w *WakeListener) run() {
	defer close(w.done)
	defer unix.Close(w.fd)
	buf := make([]byte, wakeSnap)
	oob := make([]byte, unix.CmsgSpace(16))
	for {
		select {
		case <-w.stop:
			return
		default:
		}
		n, oobn, _, from, err := unix.Recvmsg(w.fd, buf, oob, 0)
		switch {
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR):
			continue
		case err != nil:
			w.mu.Lock()
			w.err = fmt.Errorf("wake listener: %w", err)
			w.mu.Unlock()
			return
		}
		ll, ok := from.(*unix.SockaddrLinklayer)
		if !ok {
			continue
		}
		ifname, ours := w.ifnames[ll.Ifindex]
		if !ours {
			continue
		}
		p, ok := ParseWakeFrame(buf[:n])
		if !ok {
			continue
		}
		p.At = packetTime(oob[:oobn])
		p.Interface = ifname
		p.Outgoing = ll.Pkttype == unix.PACKET_OUTGOING
		w.record(p, ll.Pkttype)
	}
}

// record keeps p and wakes the host when p does.
func (w *WakeListener) record(p WakePacket, pkttype uint8) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.packets) < maxWakePackets {
		w.packets = append(w.packets, p)
	} else {
		w.dropped++
	}
	// A card takes frames addressed to it, broadcast or multicast, never
	// its own, never another host's (a flooded unicast).
	received := pkttype == unix.PACKET_HOST || pkttype == unix.PACKET_BROADCAST || pkttype == unix.PACKET_MULTICAST
	if w.awake || !received || !w.macs[p.MAC.String()] {
		return
	}
	if len(w.password) > 0 && !bytes.Equal(p.Password, w.password) {
		return
	}
	w.wake, w.awake = p, true
	close(w.woken)
}

// packetTime reads the kernel's SO_TIMESTAMPNS from a control message, or
// falls back to now.
func packetTime(oob []byte) time.Time {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err == nil {
		for _, m := range msgs {
			if m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SO_TIMESTAMPNS && len(m.Data) >= 16 {
				sec := int64(binary.NativeEndian.Uint64(m.Data[0:]))
				nsec := int64(binary.NativeEndian.Uint64(m.Data[8:]))
				return time.Unix(sec, nsec)
			}
		}
	}
	return time.Now()
}

// ParseWakeFrame finds a magic packet in an Ethernet frame (without FCS):
// the payload of an EtherType 0x0842 frame, or of an IPv4 UDP datagram to
// port 9 or 7 (the first fragment only). At, Interface and Outgoing are
// the caller's to fill.
func ParseWakeFrame(frame []byte) (WakePacket, bool) {
	const ethHeader = 14
	if len(frame) < ethHeader {
		return WakePacket{}, false
	}
	p := WakePacket{DstMAC: clone(frame[0:6]), SrcMAC: clone(frame[6:12])}
	var payload []byte
	switch binary.BigEndian.Uint16(frame[12:14]) {
	case wake.EtherType:
		p.Via, payload = "ether", frame[ethHeader:]
	case 0x0800:
		ip := frame[ethHeader:]
		if len(ip) < 20 || ip[0]>>4 != 4 || ip[9] != unix.IPPROTO_UDP {
			return WakePacket{}, false
		}
		ihl := int(ip[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(ip[2:4]))
		if ihl < 20 || total < ihl+8 || total > len(ip) || binary.BigEndian.Uint16(ip[6:8])&0x1fff != 0 {
			return WakePacket{}, false
		}
		udp := ip[ihl:total]
		ulen := int(binary.BigEndian.Uint16(udp[4:6]))
		p.Port = int(binary.BigEndian.Uint16(udp[2:4]))
		if ulen < 8 || ulen > len(udp) || (p.Port != 9 && p.Port != 7) {
			return WakePacket{}, false
		}
		p.SrcIP, _ = netip.AddrFromSlice(ip[12:16])
		p.DstIP, _ = netip.AddrFromSlice(ip[16:20])
		p.Via, payload = "udp", udp[8:ulen]
	default:
		return WakePacket{}, false
	}
	mac, password, ok := wake.ParseMagicPacket(payload)
	if !ok {
		return WakePacket{}, false
	}
	p.MAC, p.Password = mac, password
	return p, true
}

func clone(b []byte) net.HardwareAddr { return append(net.HardwareAddr(nil), b...) }
