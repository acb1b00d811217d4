package peer

import (
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

const (
	sysTestRouteHeader = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	sysTestARPHeader   = "IP address       HW type     Flags       HW address            Mask     Device\n"
)

// sysFakeProc writes files (relative path → content) under a fresh proc dir.
func sysFakeProc(t *testing.T, files map[string]string) SysSource {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return SysSource{ProcDir: dir, UtmpPath: filepath.Join(dir, "no-utmp")}
}

func TestDefaultGateway(t *testing.T) {
	const (
		// 192.168.2.1 via eth0 at metric 100, written as the kernel does.
		defaultEth0 = "eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
		lanEth0     = "eth0\t0002A8C0\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"
		arpGateway  = "192.168.2.1      0x1         0x2         aa:bb:cc:dd:ee:ff     *        eth0\n"
	)
	tests := []struct {
		name    string
		route   string
		arp     string // "" means no arp file
		wantIP  string
		wantMAC string
		wantErr error // nil with wantIP "" means any error
	}{
		{
			name:    "default route with arp entry",
			route:   sysTestRouteHeader + lanEth0 + defaultEth0,
			arp:     sysTestARPHeader + arpGateway,
			wantIP:  "192.168.2.1",
			wantMAC: "aa:bb:cc:dd:ee:ff",
		},
		{
			name:    "no default route",
			route:   sysTestRouteHeader + lanEth0,
			arp:     sysTestARPHeader + arpGateway,
			wantErr: errSysNoDefaultGateway,
		},
		{
			name:    "ipv6-only host has an empty v4 table",
			route:   sysTestRouteHeader,
			wantErr: errSysNoDefaultGateway,
		},
		{
			name: "malformed lines ignored and lowest metric wins",
			route: sysTestRouteHeader +
				"garbage\n" +
				"eth0\t00000000\tZZZZZZZZ\t0003\t0\t0\t1\t00000000\t0\t0\t0\n" + // bad hex
				"eth0\t00000000\t0102A8C0\tXX\t0\t0\t1\t00000000\t0\t0\t0\n" + // bad flags
				"eth0\t00000000\t0102A8C0\t0003\t0\t0\tten\t00000000\t0\t0\t0\n" + // bad metric
				"wg0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n" + // no gateway
				"eth1\t00000000\t0101000A\t0002\t0\t0\t0\t00000000\t0\t0\t0\n" + // down
				"wlan0\t00000000\t0100A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n" +
				defaultEth0 +
				"eth0\t00000000\t0102A8C0\n", // truncated
			arp: sysTestARPHeader +
				"not an arp line\n" +
				"192.168.2.1      0x1         0x2         zz:zz                 *        eth0\n" +
				arpGateway,
			wantIP:  "192.168.2.1",
			wantMAC: "aa:bb:cc:dd:ee:ff",
		},
		{
			name:   "gateway without arp file",
			route:  sysTestRouteHeader + defaultEth0,
			wantIP: "192.168.2.1",
		},
		{
			name:  "incomplete arp entry is no mac",
			route: sysTestRouteHeader + defaultEth0,
			arp: sysTestARPHeader +
				"192.168.2.1      0x1         0x0         00:00:00:00:00:00     *        eth0\n",
			wantIP: "192.168.2.1",
		},
		{
			name:  "entry on the route interface preferred",
			route: sysTestRouteHeader + defaultEth0,
			arp: sysTestARPHeader +
				"192.168.2.1      0x1         0x2         11:22:33:44:55:66     *        eth9\n" +
				"192.168.2.10     0x1         0x2         99:99:99:99:99:99     *        eth0\n" +
				arpGateway,
			wantIP:  "192.168.2.1",
			wantMAC: "aa:bb:cc:dd:ee:ff",
		},
		{
			name:  "entry on another interface as fallback",
			route: sysTestRouteHeader + defaultEth0,
			arp: sysTestARPHeader +
				"192.168.2.1      0x1         0x2         11:22:33:44:55:66     *        br0\n",
			wantIP:  "192.168.2.1",
			wantMAC: "11:22:33:44:55:66",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := map[string]string{"net/route": tt.route}
			if tt.arp != "" {
				files["net/arp"] = tt.arp
			}
			ip, mac, err := sysFakeProc(t, files).DefaultGateway()
			if tt.wantIP == "" {
				if err == nil {
					t.Fatalf("DefaultGateway() = %v, %v; want error", ip, mac)
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("error = %v; want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("DefaultGateway: %v", err)
			}
			if ip.String() != tt.wantIP {
				t.Errorf("ip = %v; want %s", ip, tt.wantIP)
			}
			if tt.wantMAC == "" && mac != nil {
				t.Errorf("mac = %v; want none", mac)
			}
			if tt.wantMAC != "" && mac.String() != tt.wantMAC {
				t.Errorf("mac = %v; want %s", mac, tt.wantMAC)
			}
		})
	}
}

func TestDefaultGatewayNoRouteFile(t *testing.T) {
	_, _, err := sysFakeProc(t, nil).DefaultGateway()
	if err == nil || errors.Is(err, errSysNoDefaultGateway) {
		t.Fatalf("error = %v; want a read error", err)
	}
}

// sysUtmpRecord builds one glibc x86_64/arm64 struct utmp record.
func sysUtmpRecord(typ int16, line, user string) []byte {
	rec := make([]byte, sysUtmpRecordSize)
	binary.LittleEndian.PutUint16(rec[sysUtmpTypeOffset:], uint16(typ))
	binary.LittleEndian.PutUint32(rec[4:], 4242) // ut_pid
	copy(rec[sysUtmpLineOffset:sysUtmpLineOffset+sysUtmpLineSize], line)
	copy(rec[sysUtmpUserOffset:sysUtmpUserOffset+sysUtmpUserSize], user)
	return rec
}

func sysUtmpFile(t *testing.T, recs ...[]byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "utmp")
	if err := os.WriteFile(p, slices.Concat(recs...), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConsoleUsersUtmp(t *testing.T) {
	const bootTime, loginProcess = 2, 6
	path := sysUtmpFile(t,
		sysUtmpRecord(bootTime, "~", "reboot"),
		sysUtmpRecord(loginProcess, "tty2", "LOGIN"),
		sysUtmpRecord(sysUtmpUserProcess, "tty1", "alice"),
		sysUtmpRecord(sysUtmpUserProcess, "pts/0", "alice"),
		sysUtmpRecord(sysUtmpDeadProcess, "pts/1", "mallory"),
		sysUtmpRecord(sysUtmpUserProcess, "pts/2", ""),
		// A user name filling all 32 bytes has no NUL terminator.
		sysUtmpRecord(sysUtmpUserProcess, "pts/3", strings.Repeat("z", sysUtmpUserSize)),
		sysUtmpRecord(sysUtmpUserProcess, "pts/4", "bob")[:100], // caught mid-write
	)
	got, err := SysSource{UtmpPath: path}.ConsoleUsers()
	if err != nil {
		t.Fatalf("ConsoleUsers: %v", err)
	}
	want := []string{"alice", strings.Repeat("z", sysUtmpUserSize)}
	if !slices.Equal(got, want) {
		t.Fatalf("ConsoleUsers = %q; want %q", got, want)
	}
}

func TestConsoleUsersUtmpOneUser(t *testing.T) {
	path := sysUtmpFile(t,
		sysUtmpRecord(sysUtmpUserProcess, "tty1", "alice"),
		sysUtmpRecord(sysUtmpUserProcess, "tty2", "alice"),
		sysUtmpRecord(sysUtmpDeadProcess, "tty3", "bob"),
	)
	got, err := SysSource{UtmpPath: path}.ConsoleUsers()
	if err != nil || !slices.Equal(got, []string{"alice"}) {
		t.Fatalf("ConsoleUsers = %q, %v; want [alice]", got, err)
	}
}

func TestConsoleUsersUtmpEmptyAndMissing(t *testing.T) {
	got, err := SysSource{UtmpPath: sysUtmpFile(t)}.ConsoleUsers()
	if err != nil || len(got) != 0 {
		t.Fatalf("empty utmp: ConsoleUsers = %q, %v; want none", got, err)
	}
	_, err = SysSource{UtmpPath: filepath.Join(t.TempDir(), "missing")}.ConsoleUsers()
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing utmp: error = %v; want ErrNotExist", err)
	}
}

func TestSysLoadAndUptime(t *testing.T) {
	src := sysFakeProc(t, map[string]string{
		"loadavg": "0.52 0.58 0.59 1/467 12345\n",
		"uptime":  "12345.67 54321.00\n",
	})
	load, err := src.load1()
	if err != nil || load != 0.52 {
		t.Errorf("load1 = %v, %v; want 0.52", load, err)
	}
	up, err := src.uptime()
	if err != nil || up != 12345 {
		t.Errorf("uptime = %v, %v; want 12345", up, err)
	}

	for _, body := range []string{"", "\n", "abc 1 2", "-1 0"} {
		bad := sysFakeProc(t, map[string]string{"loadavg": body, "uptime": body})
		if v, err := bad.load1(); err == nil {
			t.Errorf("load1(%q) = %v; want error", body, v)
		}
		if v, err := bad.uptime(); err == nil {
			t.Errorf("uptime(%q) = %v; want error", body, v)
		}
	}
}

func TestStats(t *testing.T) {
	src := sysFakeProc(t, map[string]string{
		"loadavg": "1.25 0.58 0.59 1/467 12345\n",
		"uptime":  "3600.99 100.00\n",
	})
	src.UtmpPath = sysUtmpFile(t, sysUtmpRecord(sysUtmpUserProcess, "tty1", "alice"))
	now := time.Unix(1_700_000_000, 0)

	st := src.Stats(t.TempDir(), now)
	if st.Load1 != 1.25 || st.UptimeSeconds != 3600 {
		t.Errorf("load1, uptime = %v, %v; want 1.25, 3600", st.Load1, st.UptimeSeconds)
	}
	if st.Cpus != uint32(runtime.NumCPU()) || st.Cpus == 0 {
		t.Errorf("cpus = %d; want %d", st.Cpus, runtime.NumCPU())
	}
	if st.DiskTotalBytes == 0 || st.DiskUsedBytes > st.DiskTotalBytes {
		t.Errorf("disk used/total = %d/%d; want total > 0 and used <= total",
			st.DiskUsedBytes, st.DiskTotalBytes)
	}
	if st.TakenUnix != now.Unix() {
		t.Errorf("taken = %d; want %d", st.TakenUnix, now.Unix())
	}
	if !slices.Equal(st.ConsoleUsers, []string{"alice"}) {
		t.Errorf("console users = %q; want [alice]", st.ConsoleUsers)
	}
}

func TestStatsWithNothingToRead(t *testing.T) {
	src := sysFakeProc(t, nil)
	st := src.Stats(filepath.Join(t.TempDir(), "missing"), time.Unix(1, 0))
	if st.Load1 != 0 || st.UptimeSeconds != 0 || st.DiskTotalBytes != 0 || st.ConsoleUsers != nil {
		t.Errorf("Stats = %v; want only cpus and time", st)
	}
	if st.Cpus == 0 || st.TakenUnix != 1 {
		t.Errorf("cpus, taken = %d, %d; want >0, 1", st.Cpus, st.TakenUnix)
	}
}

func TestPrivateAddrs(t *testing.T) {
	cidr := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	addrs := []net.Addr{
		cidr("fd00::5/64"),
		cidr("192.168.1.20/24"),
		cidr("127.0.0.1/8"),
		cidr("::1/128"),
		cidr("fe80::1/64"),
		cidr("169.254.3.4/16"),
		cidr("10.0.0.7/8"),
		&net.IPAddr{IP: net.ParseIP("10.0.0.7")}, // duplicate via another type
		&net.IPAddr{IP: net.ParseIP("2001:db8::9")},
		cidr("224.0.0.1/32"),
		&net.UnixAddr{Name: "/tmp/x", Net: "unix"},
	}
	got := sysPrivateAddrs(addrs)
	want := []string{"10.0.0.7", "192.168.1.20", "2001:db8::9", "fd00::5"}
	if !slices.Equal(got, want) {
		t.Fatalf("sysPrivateAddrs = %q; want %q", got, want)
	}
}

func TestPrivateIPsRealHost(t *testing.T) {
	seenV6 := false
	for _, s := range PrivateIPs() {
		ip := net.ParseIP(s)
		if ip == nil || ip.IsLoopback() || ip.IsLinkLocalUnicast() {
			t.Errorf("PrivateIPs returned %q", s)
			continue
		}
		if ip.To4() == nil {
			seenV6 = true
		} else if seenV6 {
			t.Errorf("IPv4 %s listed after an IPv6 address", s)
		}
	}
}

func TestHostInfoRealHost(t *testing.T) {
	if _, err := os.Stat("/proc/self"); err != nil {
		t.Skip("no /proc on this host")
	}
	info := SysSource{}.HostInfo("v1.2.3")
	if info.Hostname == "" || info.Os != runtime.GOOS || info.Arch != runtime.GOARCH {
		t.Errorf("HostInfo = %v; want hostname, os and arch", info)
	}
	t.Logf("HostInfo: %v", info)
	if info.Version != "v1.2.3" {
		t.Errorf("version = %q; want v1.2.3", info.Version)
	}
	if info.GatewayMac != "" && info.GatewayIp == "" {
		t.Errorf("gateway MAC %s without an IP", info.GatewayMac)
	}
}

func FuzzSysParseUtmp(f *testing.F) {
	f.Add(slices.Concat(
		sysUtmpRecord(sysUtmpUserProcess, "tty1", "alice"),
		sysUtmpRecord(sysUtmpDeadProcess, "tty2", "bob"),
	))
	f.Add([]byte{7, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		users := sysParseUtmp(data)
		if !slices.IsSorted(users) || len(slices.Compact(slices.Clone(users))) != len(users) {
			t.Fatalf("users %q not sorted and unique", users)
		}
		if len(users) > len(data)/sysUtmpRecordSize {
			t.Fatalf("%d users from %d records", len(users), len(data)/sysUtmpRecordSize)
		}
	})
}

func FuzzSysParseRoute(f *testing.F) {
	f.Add(sysTestRouteHeader + "eth0\t00000000\t0102A8C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n")
	f.Add(sysTestRouteHeader)
	f.Fuzz(func(t *testing.T, table string) {
		ip, _, err := sysParseRoute(strings.NewReader(table))
		if err == nil && (ip.To4() == nil || ip.IsUnspecified()) {
			t.Fatalf("gateway %v from a successful parse", ip)
		}
	})
}

func FuzzSysParseARP(f *testing.F) {
	f.Add(sysTestARPHeader + "192.168.2.1      0x1         0x2         aa:bb:cc:dd:ee:ff     *        eth0\n")
	f.Fuzz(func(t *testing.T, table string) {
		mac := sysParseARP(strings.NewReader(table), net.IPv4(192, 168, 2, 1), "eth0")
		if mac != nil && sysAllZero(mac) {
			t.Fatalf("zero MAC returned")
		}
	})
}

func TestSysNics(t *testing.T) {
	cidr := func(s string) net.Addr {
		ip, n, err := net.ParseCIDR(s)
		if err != nil {
			t.Fatal(err)
		}
		n.IP = ip
		return n
	}
	mac := func(s string) net.HardwareAddr {
		m, err := net.ParseMAC(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	up := net.FlagUp | net.FlagBroadcast
	in := []sysNic{
		{name: "lo", flags: net.FlagUp | net.FlagLoopback, mac: nil, addrs: []net.Addr{cidr("127.0.0.1/8")}},
		{name: "eth0", flags: up, mac: mac("02:00:00:aa:bb:cc"), addrs: []net.Addr{
			cidr("fe80::1/64"), cidr("fd00::5/64"), cidr("192.168.1.20/24"),
			&net.IPNet{IP: net.ParseIP("10.1.2.3"), Mask: net.CIDRMask(112, 128)},     // a v4 address with a 16-byte mask
			&net.IPNet{IP: net.ParseIP("10.9.9.9"), Mask: net.IPMask{255, 0, 255, 0}}, // not a prefix
			&net.IPAddr{IP: net.ParseIP("10.0.0.1")},
		}},
		{name: "eth1", flags: net.FlagBroadcast, mac: mac("02:00:00:00:00:01")},                           // down
		{name: "wg0", flags: up, addrs: []net.Addr{cidr("10.8.0.2/24")}},                                  // no MAC
		{name: "ib0", flags: up, mac: mac("00:00:00:00:fe:80:00:00:00:00:00:00:00:00:00:00:00:00:00:01")}, // 20 bytes
		{name: "zero0", flags: up, mac: make(net.HardwareAddr, 6)},
		{name: "wlan0", flags: up, mac: mac("02:00:00:dd:ee:ff")},
	}
	got := sysNics(in, "wlan0")
	want := []*pb.Nic{
		{Name: "eth0", Mac: "02:00:00:aa:bb:cc", Addrs: []string{"10.1.2.3/16", "192.168.1.20/24", "fd00::5/64"}},
		{Name: "wlan0", Mac: "02:00:00:dd:ee:ff", DefaultRoute: true},
	}
	if len(got) != len(want) {
		t.Fatalf("sysNics = %v; want %v", got, want)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("nic %d = %v; want %v", i, got[i], want[i])
		}
	}
	if got := sysNics(in, ""); got[0].DefaultRoute || got[1].DefaultRoute {
		t.Errorf("no default route, yet %v", got)
	}
}
