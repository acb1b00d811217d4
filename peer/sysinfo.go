package peer

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// errSysNoDefaultGateway means the routing table has no IPv4 default route
// through a gateway, as on an IPv6-only host or one reached only over a
// point-to-point link.
var errSysNoDefaultGateway = errors.New("no IPv4 default gateway")

const (
	sysDefaultProcDir  = "/proc"
	sysDefaultUtmpPath = "/var/run/utmp"
	sysFallbackUtmp    = "/run/utmp"

	// Flags of /proc/net/route (linux/route.h) and /proc/net/arp (linux/if_arp.h).
	sysRTFUp      = 0x1
	sysRTFGateway = 0x2
	sysATFCom     = 0x2

	// struct utmp as glibc lays it out on x86_64 and arm64, both little-endian.
	sysUtmpRecordSize  = 384
	sysUtmpTypeOffset  = 0
	sysUtmpLineOffset  = 8
	sysUtmpLineSize    = 32
	sysUtmpUserOffset  = 44
	sysUtmpUserSize    = 32
	sysUtmpUserProcess = 7
	sysUtmpDeadProcess = 8

	// A utmp file holds one record per terminal slot; anything larger than
	// this is not a utmp file and is not worth holding in memory.
	sysMaxUtmpBytes = 4 << 20
)

// SysSource lets tests point the readers at fake /proc and utmp files.
// The zero value reads the real host.
type SysSource struct {
	ProcDir  string // default "/proc"
	UtmpPath string // default "/var/run/utmp" (fall back to "/run/utmp")
}

func (s SysSource) procDir() string {
	if s.ProcDir == "" {
		return sysDefaultProcDir
	}
	return s.ProcDir
}

func (s SysSource) procFile(elem ...string) string {
	return filepath.Join(append([]string{s.procDir()}, elem...)...)
}

// HostInfo gathers the facts a peer reports when it connects. It never
// fails: a fact the host will not give up (no default route, no utmp in a
// container) stays empty, because a partial report is still useful.
func (s SysSource) HostInfo(version string) *pb.PeerInfo {
	info := &pb.PeerInfo{
		Os:         runtime.GOOS,
		Arch:       runtime.GOARCH,
		Version:    version,
		PrivateIps: PrivateIPs(),
	}
	if name, err := os.Hostname(); err == nil {
		info.Hostname = name
	}
	ip, iface, err := s.defaultRoute()
	if err == nil {
		info.GatewayIp = ip.String()
		if mac := s.gatewayMAC(ip, iface); mac != nil {
			info.GatewayMac = mac.String()
		}
	}
	info.Nics = Nics(iface)
	if users, err := s.ConsoleUsers(); err == nil {
		info.ConsoleUsers = users
	}
	return info
}

// Stats samples the host's load, disk and uptime at now. diskPath names the
// filesystem to measure ("/" when empty). Like HostInfo it never fails; a
// reading that cannot be taken stays zero.
func (s SysSource) Stats(diskPath string, now time.Time) *pb.PeerStats {
	st := &pb.PeerStats{
		Cpus:      uint32(runtime.NumCPU()),
		TakenUnix: now.Unix(),
	}
	if load, err := s.load1(); err == nil {
		st.Load1 = load
	}
	if up, err := s.uptime(); err == nil {
		st.UptimeSeconds = up
	}
	if diskPath == "" {
		diskPath = "/"
	}
	if used, total, err := sysDiskUsage(diskPath); err == nil {
		st.DiskUsedBytes, st.DiskTotalBytes = used, total
	}
	if users, err := s.ConsoleUsers(); err == nil {
		st.ConsoleUsers = users
	}
	return st
}

// load1 reads the one-minute load average, the first field of
// /proc/loadavg ("0.52 0.58 0.59 1/467 12345").
func (s SysSource) load1() (float64, error) {
	field, err := sysFirstField(s.procFile("loadavg"))
	if err != nil {
		return 0, err
	}
	load, err := strconv.ParseFloat(field, 64)
	if err != nil || load < 0 {
		return 0, fmt.Errorf("parsing loadavg %q: bad load", field)
	}
	return load, nil
}

// uptime reads whole seconds since boot, the first field of /proc/uptime
// ("12345.67 54321.00").
func (s SysSource) uptime() (uint64, error) {
	field, err := sysFirstField(s.procFile("uptime"))
	if err != nil {
		return 0, err
	}
	secs, err := strconv.ParseFloat(field, 64)
	if err != nil || secs < 0 {
		return 0, fmt.Errorf("parsing uptime %q: bad seconds", field)
	}
	return uint64(secs), nil
}

func sysFirstField(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	fields := strings.Fields(string(data))
	if len(fields) == 0 {
		return "", fmt.Errorf("reading %s: empty", path)
	}
	return fields[0], nil
}

func sysDiskUsage(path string) (used, total uint64, err error) {
	var fs syscall.Statfs_t
	if err := syscall.Statfs(path, &fs); err != nil {
		return 0, 0, fmt.Errorf("statfs %s: %w", path, err)
	}
	bsize := uint64(fs.Bsize)
	total = uint64(fs.Blocks) * bsize
	used = (uint64(fs.Blocks) - uint64(fs.Bfree)) * bsize
	return used, total, nil
}

// DefaultGateway finds the IPv4 default gateway in /proc/net/route and its
// MAC address in /proc/net/arp. Together they fingerprint the LAN a peer sits
// on, which is how the coordinator finds peers behind the same gateway.
// When the gateway has no complete ARP entry yet, mac is nil and err is nil:
// the IP alone is still a fact worth reporting.
func (s SysSource) DefaultGateway() (ip net.IP, mac net.HardwareAddr, err error) {
	ip, iface, err := s.defaultRoute()
	if err != nil {
		return nil, nil, err
	}
	return ip, s.gatewayMAC(ip, iface), nil
}

// defaultRoute is the IPv4 default route's gateway and interface.
func (s SysSource) defaultRoute() (net.IP, string, error) {
	routes, err := os.Open(s.procFile("net", "route"))
	if err != nil {
		return nil, "", fmt.Errorf("reading routes: %w", err)
	}
	defer routes.Close()
	return sysParseRoute(routes)
}

// gatewayMAC is the gateway's MAC from the ARP table, nil when unknown.
func (s SysSource) gatewayMAC(ip net.IP, iface string) net.HardwareAddr {
	arp, err := os.Open(s.procFile("net", "arp"))
	if err != nil {
		return nil
	}
	defer arp.Close()
	return sysParseARP(arp, ip, iface)
}

// sysParseRoute picks the IPv4 default route with the lowest metric from a
// /proc/net/route table and returns its gateway and interface. The kernel
// prints addresses as the hex of the in-memory (network order) value read as
// a host-order integer, so on little-endian hosts "0102A8C0" is 192.168.2.1.
// Lines that do not parse are skipped.
func sysParseRoute(r io.Reader) (net.IP, string, error) {
	var (
		best       net.IP
		bestIface  string
		bestMetric uint64
	)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask MTU Window IRTT
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		flags, err := strconv.ParseUint(f[3], 16, 32)
		if err != nil || flags&(sysRTFUp|sysRTFGateway) != sysRTFUp|sysRTFGateway {
			continue
		}
		gw, ok := sysRouteAddr(f[2])
		if !ok || gw.IsUnspecified() {
			continue
		}
		metric, err := strconv.ParseUint(f[6], 10, 32)
		if err != nil {
			continue
		}
		if best == nil || metric < bestMetric {
			best, bestIface, bestMetric = gw, f[0], metric
		}
	}
	if err := sc.Err(); err != nil {
		return nil, "", fmt.Errorf("reading routes: %w", err)
	}
	if best == nil {
		return nil, "", errSysNoDefaultGateway
	}
	return best, bestIface, nil
}

// sysRouteAddr decodes an 8-digit /proc/net/route address.
func sysRouteAddr(s string) (net.IP, bool) {
	if len(s) != 8 {
		return nil, false
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, false
	}
	// Linux on the architectures we ship for is little-endian.
	v := binary.BigEndian.Uint32(b)
	ip := make(net.IP, 4)
	binary.LittleEndian.PutUint32(ip, v)
	return ip, true
}

// sysParseARP finds the MAC of ip in a /proc/net/arp table, preferring the
// entry on iface. Incomplete entries (no ATF_COM flag, zero MAC) are skipped.
func sysParseARP(r io.Reader, ip net.IP, iface string) net.HardwareAddr {
	var fallback net.HardwareAddr
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// IP address, HW type, Flags, HW address, Mask, Device
		f := strings.Fields(sc.Text())
		if len(f) < 6 || !ip.Equal(net.ParseIP(f[0])) {
			continue
		}
		flags, err := strconv.ParseUint(strings.TrimPrefix(f[2], "0x"), 16, 32)
		if err != nil || flags&sysATFCom == 0 {
			continue
		}
		mac, err := net.ParseMAC(f[3])
		if err != nil || sysAllZero(mac) {
			continue
		}
		if f[5] == iface {
			return mac
		}
		if fallback == nil {
			fallback = mac
		}
	}
	return fallback
}

func sysAllZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// ConsoleUsers lists the users with a login session in utmp, each name once,
// sorted. A host without a utmp file (many containers) returns an error.
func (s SysSource) ConsoleUsers() ([]string, error) {
	paths := []string{s.UtmpPath}
	if s.UtmpPath == "" {
		paths = []string{sysDefaultUtmpPath, sysFallbackUtmp}
	}
	var err error
	for _, p := range paths {
		var data []byte
		data, err = sysReadLimited(p, sysMaxUtmpBytes)
		if err == nil {
			return sysParseUtmp(data), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			break
		}
	}
	return nil, fmt.Errorf("reading utmp: %w", err)
}

func sysReadLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit))
}

// sysParseUtmp returns the unique, sorted user names of the USER_PROCESS
// records in a glibc utmp file. A short trailing record is ignored: utmp is
// rewritten in place, so a reader can catch it mid-write.
func sysParseUtmp(data []byte) []string {
	users := []string{}
	for off := 0; off+sysUtmpRecordSize <= len(data); off += sysUtmpRecordSize {
		rec := data[off : off+sysUtmpRecordSize]
		if int16(binary.LittleEndian.Uint16(rec[sysUtmpTypeOffset:])) != sysUtmpUserProcess {
			continue
		}
		name := sysCString(rec[sysUtmpUserOffset : sysUtmpUserOffset+sysUtmpUserSize])
		if name == "" {
			continue
		}
		users = append(users, name)
	}
	slices.Sort(users)
	return slices.Compact(users)
}

// sysCString reads a NUL-padded fixed-size C string field.
func sysCString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.TrimSpace(string(b))
}

// PrivateIPs lists the unicast addresses of the host's up interfaces,
// leaving out loopback and link-local ones, IPv4 first, each group sorted.
// These are the addresses a technician on the same LAN could reach.
func PrivateIPs() []string {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	var addrs []net.Addr
	for _, ifc := range ifaces {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		a, err := ifc.Addrs()
		if err != nil {
			continue
		}
		addrs = append(addrs, a...)
	}
	return sysPrivateAddrs(addrs)
}

// sysPrivateAddrs filters and orders interface addresses for PrivateIPs.
func sysPrivateAddrs(addrs []net.Addr) []string {
	var ips []netip.Addr
	for _, a := range addrs {
		var raw net.IP
		switch v := a.(type) {
		case *net.IPNet:
			raw = v.IP
		case *net.IPAddr:
			raw = v.IP
		default:
			continue
		}
		ip, ok := netip.AddrFromSlice(raw)
		if !ok {
			continue
		}
		ip = ip.Unmap().WithZone("")
		// IsGlobalUnicast already rules out loopback, link-local, multicast
		// and unspecified addresses, and keeps RFC 1918 and ULA ones.
		if !ip.IsGlobalUnicast() {
			continue
		}
		ips = append(ips, ip)
	}
	// Compare orders by bit length first, which puts IPv4 before IPv6.
	slices.SortFunc(ips, netip.Addr.Compare)
	ips = slices.Compact(ips)
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}

// sysNic is what Nics needs of an interface (net.Interface and its
// addresses), so the filter can be tested on made-up interfaces.
type sysNic struct {
	name  string
	flags net.Flags
	mac   net.HardwareAddr
	addrs []net.Addr
}

// Nics lists the host's up interfaces that have an Ethernet (6-byte) MAC,
// loopback left out, with their addresses; defaultIface (from the routing
// table, "" when there is no default route) is marked as carrying the IPv4
// default route. Wake-on-LAN needs these MACs, and a waker needs the
// subnets to pick its interface. It asks the kernel once per interface
// (netlink), so it is cheap enough for every hello.
func Nics(defaultIface string) []*pb.Nic {
	ifaces, err := net.Interfaces()
	if err != nil {
		return nil
	}
	in := make([]sysNic, 0, len(ifaces))
	for _, ifc := range ifaces {
		n := sysNic{name: ifc.Name, flags: ifc.Flags, mac: ifc.HardwareAddr}
		if sysWantNic(n) {
			n.addrs, _ = ifc.Addrs()
		}
		in = append(in, n)
	}
	return sysNics(in, defaultIface)
}

func sysWantNic(n sysNic) bool {
	return n.flags&net.FlagUp != 0 && n.flags&net.FlagLoopback == 0 && len(n.mac) == 6 && !sysAllZero(n.mac)
}

// sysNics filters and formats interfaces for Nics: CIDR addresses, IPv4
// first, link-local ones left out (as in PrivateIPs).
func sysNics(in []sysNic, defaultIface string) []*pb.Nic {
	var out []*pb.Nic
	for _, n := range in {
		if !sysWantNic(n) {
			continue
		}
		var prefixes []netip.Prefix
		for _, a := range n.addrs {
			ipn, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			ip, ok := netip.AddrFromSlice(ipn.IP)
			if !ok {
				continue
			}
			ip = ip.Unmap()
			ones, bits := ipn.Mask.Size()
			if !ip.IsGlobalUnicast() || bits == 0 {
				continue // link-local, or a mask that is not a prefix
			}
			if ip.Is4() && bits == 128 {
				ones -= 96
			}
			prefixes = append(prefixes, netip.PrefixFrom(ip, ones))
		}
		slices.SortFunc(prefixes, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
		nic := &pb.Nic{Name: n.name, Mac: n.mac.String(), DefaultRoute: n.name == defaultIface && defaultIface != ""}
		for _, p := range prefixes {
			nic.Addrs = append(nic.Addrs, p.String())
		}
		out = append(out, nic)
	}
	return out
}
