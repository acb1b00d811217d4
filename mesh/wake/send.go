package wake

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// ErrNoInterface is returned when no interface leads toward an address (or
// there is no default route).
var ErrNoInterface = errors.New("no interface")

// Forwarding timeouts: a passive peer is on the waker's LAN or nowhere.
const (
	forwardDialTimeout  = 2 * time.Second
	forwardWriteTimeout = 2 * time.Second
	// maxForward bounds the addresses one command is forwarded to.
	maxForward = 16
)

// InterfaceToward is the up, non-loopback interface one of whose subnets
// holds ip.
func InterfaceToward(ip netip.Addr) (*net.Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("listing interfaces: %w", err)
	}
	ip = ip.Unmap()
	for i := range ifs {
		ifi := &ifs[i]
		if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if p, ok := prefixOf(a); ok && p.Contains(ip) {
				return ifi, nil
			}
		}
	}
	return nil, fmt.Errorf("%w toward %s", ErrNoInterface, ip)
}

func prefixOf(a net.Addr) (netip.Prefix, bool) {
	n, ok := a.(*net.IPNet)
	if !ok {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones).Masked(), true
}

// DefaultRouteInterface is the interface of the IPv4 default route with the
// lowest metric (/proc/net/route of the calling thread's namespace).
func DefaultRouteInterface() (*net.Interface, error) {
	// /proc/net is the namespace of the process's main thread; a thread
	// inside another namespace (the lab, tests) reads its own.
	f, err := os.Open("/proc/thread-self/net/route")
	if err != nil {
		f, err = os.Open("/proc/net/route")
	}
	if err != nil {
		return nil, fmt.Errorf("reading routes: %w", err)
	}
	defer f.Close()
	name, err := defaultRouteName(f)
	if err != nil {
		return nil, err
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, fmt.Errorf("default route interface %s: %w", name, err)
	}
	return ifi, nil
}

// defaultRouteName picks the up IPv4 default route with the lowest metric
// from a /proc/net/route table.
func defaultRouteName(r io.Reader) (string, error) {
	const rtfUp = 0x1
	best, bestMetric := "", uint64(1<<63)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		flags, err := strconv.ParseUint(f[3], 16, 32)
		if err != nil || flags&rtfUp == 0 {
			continue
		}
		metric, err := strconv.ParseUint(f[6], 10, 64)
		if err != nil {
			continue
		}
		if metric < bestMetric {
			best, bestMetric = f[0], metric
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading routes: %w", err)
	}
	if best == "" {
		return "", fmt.Errorf("%w: no IPv4 default route", ErrNoInterface)
	}
	return best, nil
}

// SendMagic sends the magic packet for mac (with the SecureOn password, if
// any) on ifi: as a UDP broadcast to 255.255.255.255 and to each of ifi's
// IPv4 subnet broadcasts, on each of Ports, and as an Ethernet frame of
// EtherType 0x0842 to ff:ff:ff:ff:ff:ff. It returns one line per send
// ("eth0 udp 255.255.255.255:9", "eth0 ether 0x0842"). The frame is skipped,
// not an error, when a packet socket cannot be opened (no CAP_NET_RAW) or
// ifi is not Ethernet; the error says that nothing at all could be sent.
func SendMagic(ctx context.Context, ifi *net.Interface, mac net.HardwareAddr, password []byte) ([]string, error) {
	if len(mac) != 6 {
		return nil, fmt.Errorf("MAC %s: not 6 bytes", mac)
	}
	if n := len(password); n != 0 && n != 4 && n != 6 {
		return nil, fmt.Errorf("SecureOn password of %d bytes: 4 or 6", n)
	}
	payload := MagicPacket(mac, password)
	sent, udpErr := sendUDPBroadcast(ctx, ifi, payload)
	line, etherErr := sendEtherFrame(ifi, payload)
	if line != "" {
		sent = append(sent, line)
	}
	if len(sent) == 0 {
		return nil, fmt.Errorf("sending the magic packet for %s on %s: %w", mac, ifi.Name, errors.Join(udpErr, etherErr, ctx.Err()))
	}
	return sent, nil
}

// broadcastAddrs are the limited broadcast and the directed broadcast of
// each IPv4 subnet of ifi (shorter than /31).
func broadcastAddrs(ifi *net.Interface) []netip.Addr {
	out := []netip.Addr{netip.AddrFrom4([4]byte{255, 255, 255, 255})}
	addrs, _ := ifi.Addrs()
	for _, a := range addrs {
		p, ok := prefixOf(a)
		if !ok || !p.Addr().Is4() || p.Bits() > 30 {
			continue
		}
		b := p.Addr().As4()
		v := binary.BigEndian.Uint32(b[:]) | (1<<(32-p.Bits()) - 1)
		binary.BigEndian.PutUint32(b[:], v)
		if bc := netip.AddrFrom4(b); bc != out[0] {
			out = append(out, bc)
		}
	}
	return out
}

// sendUDPBroadcast sends payload from a UDP socket bound to ifi. Binding to
// the device (SO_BINDTODEVICE) needs CAP_NET_RAW on older kernels; without
// it, each datagram names ifi in an IP_PKTINFO control message instead,
// which routes even 255.255.255.255 out of ifi.
func sendUDPBroadcast(ctx context.Context, ifi *net.Interface, payload []byte) ([]string, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
	if err != nil {
		return nil, fmt.Errorf("udp socket: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BROADCAST, 1); err != nil {
		return nil, fmt.Errorf("SO_BROADCAST: %w", err)
	}
	var oob []byte
	if !bindToDevice.Load() || unix.SetsockoptString(fd, unix.SOL_SOCKET, unix.SO_BINDTODEVICE, ifi.Name) != nil {
		oob = unix.PktInfo4(&unix.Inet4Pktinfo{Ifindex: int32(ifi.Index)})
	}
	var sent []string
	var errs []error
	for _, dst := range broadcastAddrs(ifi) {
		for _, port := range Ports {
			if ctx.Err() != nil {
				return sent, errors.Join(append(errs, ctx.Err())...)
			}
			sa := &unix.SockaddrInet4{Port: port, Addr: dst.As4()}
			if err := unix.Sendmsg(fd, payload, oob, sa, 0); err != nil {
				errs = append(errs, fmt.Errorf("udp %s:%d: %w", dst, port, err))
				continue
			}
			sent = append(sent, fmt.Sprintf("%s udp %s:%d", ifi.Name, dst, port))
		}
	}
	return sent, errors.Join(errs...)
}

// sendEtherFrame sends payload as one Ethernet frame of EtherType 0x0842 to
// the broadcast MAC. A SOCK_DGRAM packet socket of protocol 0 has the
// kernel build the header and receives nothing.
func sendEtherFrame(ifi *net.Interface, payload []byte) (string, error) {
	if len(ifi.HardwareAddr) != 6 {
		return "", nil // not Ethernet: no such frame
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return "", nil // no CAP_NET_RAW: the UDP broadcast has to do
	}
	if err != nil {
		return "", fmt.Errorf("packet socket: %w", err)
	}
	defer unix.Close(fd)
	sa := &unix.SockaddrLinklayer{
		Protocol: htons(EtherType),
		Ifindex:  ifi.Index,
		Halen:    6,
		Addr:     [8]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
	}
	if err := unix.Sendto(fd, payload, 0, sa); err != nil {
		return "", fmt.Errorf("ether 0x%04x frame on %s: %w", EtherType, ifi.Name, err)
	}
	return fmt.Sprintf("%s ether 0x%04x", ifi.Name, EtherType), nil
}

// bindToDevice is off only in tests of the IP_PKTINFO way.
var bindToDevice atomic.Bool

func init() { bindToDevice.Store(true) }

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// Forward sends cmd to each passive address (a literal IP:port; anything
// else is skipped) over UDP (Encode) and over TCP (StreamFrame, 2 s to
// connect and 2 s to write), all at once, and returns one line per send
// that went out ("10.1.0.7:5832 udp", "10.1.0.7:5832 tcp"), in the order
// of addrs. At most 16 addresses are used.
func Forward(ctx context.Context, cmd *pb.WakeCommand, addrs []string) []string {
	dgram, err := Encode(cmd)
	if err != nil {
		return nil
	}
	stream, err := StreamFrame(cmd)
	if err != nil {
		return nil
	}
	var targets []netip.AddrPort
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil || ap.Port() == 0 {
			continue
		}
		targets = append(targets, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		if len(targets) == maxForward {
			break
		}
	}
	ok := make([][2]bool, len(targets))
	var wg sync.WaitGroup
	for i, ap := range targets {
		wg.Go(func() { ok[i][0] = forwardOne(ctx, "udp", ap, dgram) })
		wg.Go(func() { ok[i][1] = forwardOne(ctx, "tcp", ap, stream) })
	}
	wg.Wait()
	var sent []string
	for i, ap := range targets {
		if ok[i][0] {
			sent = append(sent, ap.String()+" udp")
		}
		if ok[i][1] {
			sent = append(sent, ap.String()+" tcp")
		}
	}
	return sent
}

// forwardOne sends b to ap over network ("udp": one datagram; "tcp": a
// connection of its own, bounded by forwardDialTimeout) and reports
// whether the write went out.
func forwardOne(ctx context.Context, network string, ap netip.AddrPort, b []byte) bool {
	d := net.Dialer{Timeout: forwardDialTimeout}
	c, err := d.DialContext(ctx, network, ap.String())
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetWriteDeadline(time.Now().Add(forwardWriteTimeout))
	_, err = c.Write(b)
	return err == nil
}

// parseMAC reads one of a body's MACs (6 bytes only).
func parseMAC(s string) (net.HardwareAddr, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return nil, fmt.Errorf("MAC %q: not a 6-byte MAC", s)
	}
	return hw, nil
}
