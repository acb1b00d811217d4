package netlab_test

import (
	"encoding/json"
	"errors"
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/jumpmesh/jumpmesh/sim/netlab"
	"github.com/jumpmesh/jumpmesh/sim/netlab/labtest"
	"github.com/jumpmesh/jumpmesh/sim/probe"
)

// recordMappings, when set, makes TestMappingSequences write what it
// recorded there, one JSON file per preset and protocol: the recorded
// sequences mesh/natmap's tests predict from.
//
//	go test ./sim/netlab -run TestMappingSequences -args -record-mappings=$PWD/mesh/natmap/testdata
var recordMappings = flag.String("record-mappings", "", "directory to write the recorded mapping sequences to")

// seqDests is how many destinations one socket writes to: two observers,
// seqPorts ports each, taken in turn (o1:p0, o2:p0, o1:p1, …) so that both
// the address and the port change.
const (
	seqPorts  = 8
	seqDests  = 2 * seqPorts
	seqPortLo = 40000
)

// Recording is one recorded mapping sequence: what the observers saw of one
// socket behind a NAT, in the order it wrote to them.
type Recording struct {
	Preset    string        `json:"preset"`
	Proto     string        `json:"proto"`
	LocalPort uint16        `json:"local_port"`
	Public    netip.Addr    `json:"public"`
	Seen      []Observation `json:"seen"`
	Kernel    string        `json:"kernel"`
}

// Observation is one destination and the external port it saw.
type Observation struct {
	Dest netip.AddrPort `json:"dest"`
	Port uint16         `json:"port"`
}

// TestMappingSequences records, for the easy, hard and sequential presets,
// the external ports a run of new destinations sees from one UDP socket and
// from one TCP port, and checks each preset's promise: easy one port, hard
// a new port every time, sequential the next port every time (step 1, as
// nothing else behind that NAT opens flows meanwhile). A second host behind
// the sequential NAT then shows that its flows take ports from the same
// counter: the gap a predictor has to allow for.
func TestMappingSequences(t *testing.T) {
	lab := labtest.New(t, netlab.Topology{
		Networks: []netlab.NetworkSpec{
			{Name: "pub", NAT: netlab.Public},
			{Name: "easy", NAT: netlab.Easy},
			{Name: "hard", NAT: netlab.Hard},
			{Name: "seq", NAT: netlab.Sequential},
		},
		Hosts: []netlab.HostSpec{
			{Name: "o1", Network: "pub"}, {Name: "o2", Network: "pub"},
			{Name: "c-easy", Network: "easy"},
			{Name: "c-hard", Network: "hard"},
			{Name: "c-seq", Network: "seq"}, {Name: "c-seq2", Network: "seq"},
		},
	})
	var dests []netip.AddrPort
	for i := range seqPorts {
		for _, o := range []string{"o1", "o2"} {
			h := lab.Host(o)
			serveProbes(t, h, seqPortLo+i)
			dests = append(dests, netip.AddrPortFrom(h.Addr(), uint16(seqPortLo+i)))
		}
	}
	kernel := kernelRelease(t)
	for _, tc := range []struct {
		host   string
		preset netlab.Preset
	}{
		{"c-easy", netlab.Easy},
		{"c-hard", netlab.Hard},
		{"c-seq", netlab.Sequential},
	} {
		h := lab.Host(tc.host)
		for _, proto := range []string{"udp", "tcp"} {
			rec := Recording{Preset: string(tc.preset), Proto: proto, Public: h.Network().PublicAddr(), Kernel: kernel}
			var seen []netip.AddrPort
			if proto == "udp" {
				rec.LocalPort, seen = udpSequence(t, h, dests)
			} else {
				rec.LocalPort, seen = tcpSequence(t, h, dests)
			}
			for i, m := range seen {
				if m.Addr() != rec.Public {
					t.Errorf("%s %s: %v saw %v, want the NAT's %v", tc.preset, proto, dests[i], m, rec.Public)
				}
				rec.Seen = append(rec.Seen, Observation{Dest: dests[i], Port: m.Port()})
			}
			t.Logf("%s %s from local port %d: %v", tc.preset, proto, rec.LocalPort, ports(rec))
			checkSequence(t, rec)
			writeRecording(t, rec)
		}
	}

	// Interleaved: c-seq and c-seq2 take turns opening flows through the
	// one NAT; each sees every other port of the shared counter.
	a, b := lab.Host("c-seq"), lab.Host("c-seq2")
	pa, pb := listenUDP(t, a), listenUDP(t, b)
	var seenA, seenB []uint16
	for i := range seqPorts {
		for _, side := range []struct {
			pc   net.PacketConn
			seen *[]uint16
		}{{pa, &seenA}, {pb, &seenB}} {
			m, err := probe.UDP(ctxFor(t, waitLong), side.pc, dests[i])
			if err != nil {
				t.Fatalf("UDP probe to %v: %v", dests[i], err)
			}
			*side.seen = append(*side.seen, m.Port())
		}
	}
	t.Logf("interleaved: c-seq %v, c-seq2 %v", seenA, seenB)
	for i := 1; i < len(seenA); i++ {
		if seenA[i] != seenA[i-1]+2 || seenB[i] != seenB[i-1]+2 {
			t.Fatalf("interleaved hosts: c-seq %v, c-seq2 %v, want each to step by 2", seenA, seenB)
		}
	}
	if seenB[0] != seenA[0]+1 {
		t.Errorf("c-seq2's first port %d, want c-seq's %d + 1", seenB[0], seenA[0])
	}
	// c-seq's view, recorded as "sequential-shared": what one host sees
	// while another opens flows through the same NAT.
	rec := Recording{Preset: string(netlab.Sequential) + "-shared", Proto: "udp",
		LocalPort: uint16(pa.LocalAddr().(*net.UDPAddr).Port), Public: a.Network().PublicAddr(), Kernel: kernel}
	for i, p := range seenA {
		rec.Seen = append(rec.Seen, Observation{Dest: dests[i], Port: p})
	}
	writeRecording(t, rec)
}

// TestMappingSequencesClash shows what Linux's default allocator (the easy
// preset) does when the port a host sends from is already mapped towards
// the same destination by another host: it cannot keep the port, and it
// does not take the next one either.
func TestMappingSequencesClash(t *testing.T) {
	lab := labtest.New(t, netlab.Topology{
		Networks: []netlab.NetworkSpec{{Name: "pub", NAT: netlab.Public}, {Name: "easy", NAT: netlab.Easy}},
		Hosts: []netlab.HostSpec{
			{Name: "o1", Network: "pub"},
			{Name: "c-easy", Network: "easy"}, {Name: "c-easy2", Network: "easy"},
		},
	})
	o := lab.Host("o1")
	serveProbes(t, o, seqPortLo)
	dest := netip.AddrPortFrom(o.Addr(), seqPortLo)
	first := listenUDP(t, lab.Host("c-easy"))
	port := first.LocalAddr().(*net.UDPAddr).Port
	var seen []uint16
	m, err := probe.UDP(ctxFor(t, waitLong), first, dest)
	if err != nil {
		t.Fatal(err)
	}
	seen = append(seen, m.Port())
	// The same local port on the other host, to the same destination.
	pc, err := lab.Host("c-easy2").ListenPacket("udp4", ":"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	m, err = probe.UDP(ctxFor(t, waitLong), pc, dest)
	if err != nil {
		t.Fatal(err)
	}
	seen = append(seen, m.Port())
	t.Logf("local port %d on both hosts: the destination saw %v", port, seen)
	if seen[0] != uint16(port) || seen[1] == uint16(port) || seen[1] == uint16(port+1) {
		t.Errorf("local port %d twice: ports %v, want the port kept, then another that is not the next", port, seen)
	}
}

// checkSequence asserts a recording against its preset's promise.
func checkSequence(t *testing.T, rec Recording) {
	t.Helper()
	p := ports(rec)
	switch netlab.Preset(rec.Preset) {
	case netlab.Easy:
		for _, q := range p {
			if q != rec.LocalPort {
				t.Errorf("easy %s: ports %v, want the local port %d every time", rec.Proto, p, rec.LocalPort)
				return
			}
		}
	case netlab.Hard:
		// Sixteen draws from about 64,000 ports: a repeat has odds of
		// about 1 in 500, a run of steps of one never happens.
		distinct := map[uint16]bool{}
		steps := 0
		for i, q := range p {
			distinct[q] = true
			if i > 0 && q == p[i-1]+1 {
				steps++
			}
		}
		if len(distinct) < len(p)-1 || steps > 2 {
			t.Errorf("hard %s: ports %v, want a random port per destination", rec.Proto, p)
		}
	case netlab.Sequential:
		for i := 1; i < len(p); i++ {
			if p[i] != p[i-1]+1 {
				t.Errorf("sequential %s: ports %v, want each the one before + 1", rec.Proto, p)
				return
			}
		}
		if p[0] == rec.LocalPort {
			t.Logf("sequential %s: the first port is the local port %d (a coincidence of 1 in 20,000)", rec.Proto, p[0])
		}
	}
}

func ports(rec Recording) []uint16 {
	var p []uint16
	for _, o := range rec.Seen {
		p = append(p, o.Port)
	}
	return p
}

func listenUDP(t *testing.T, h *netlab.Host) net.PacketConn {
	t.Helper()
	pc, err := h.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// udpSequence probes every destination, in order, from one socket of h.
func udpSequence(t *testing.T, h *netlab.Host, dests []netip.AddrPort) (uint16, []netip.AddrPort) {
	t.Helper()
	pc := listenUDP(t, h)
	var seen []netip.AddrPort
	for _, d := range dests {
		m, err := probe.UDP(ctxFor(t, waitLong), pc, d)
		if err != nil {
			t.Fatalf("UDP probe from %s to %v: %v", h.Name(), d, err)
		}
		seen = append(seen, m)
	}
	return uint16(pc.LocalAddr().(*net.UDPAddr).Port), seen
}

// tcpSequence connects to every destination, in order, from one local port
// of h (SO_REUSEADDR, as hole punching does).
func tcpSequence(t *testing.T, h *netlab.Host, dests []netip.AddrPort) (uint16, []netip.AddrPort) {
	t.Helper()
	var local uint16
	var seen []netip.AddrPort
	for _, d := range dests {
		ctx := ctxFor(t, waitLong)
		c, err := h.Dial(ctx, reuseDialer(local), "tcp4", d.String())
		if err != nil {
			t.Fatalf("TCP from %s to %v: %v", h.Name(), d, err)
		}
		if local == 0 {
			local = uint16(c.LocalAddr().(*net.TCPAddr).Port)
		}
		m, err := probe.TCP(ctx, c)
		c.Close()
		if err != nil {
			t.Fatalf("TCP probe from %s to %v: %v", h.Name(), d, err)
		}
		seen = append(seen, m)
	}
	return local, seen
}

// reuseDialer dials from local (any port when zero) with SO_REUSEADDR.
func reuseDialer(local uint16) *net.Dialer {
	return &net.Dialer{
		LocalAddr: &net.TCPAddr{Port: int(local)},
		Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
			})
			return errors.Join(err, serr)
		},
	}
}

func kernelRelease(t *testing.T) string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:len(b)-1])
}

func writeRecording(t *testing.T, rec Recording) {
	t.Helper()
	if *recordMappings == "" {
		return
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Join(*recordMappings, rec.Preset+"-"+rec.Proto+".json")
	if err := os.WriteFile(name, append(b, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", name)
}
