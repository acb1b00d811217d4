package netlab_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/netlab"
	"github.com/jumpmesh/jumpmesh/sim/netlab/labtest"
	"github.com/jumpmesh/jumpmesh/sim/probe"
)

// TestMultiHomed: a dual-homed host (a jumpoint's) on an isolated plant
// LAN and an office behind an easy NAT reaches its plant neighbour and the
// internet (seen at the office's public address), while the neighbour has
// no route out; a port forward on the office NAT brings a public host to
// it; its capture holds frames of both interfaces; partition cuts both.
func TestMultiHomed(t *testing.T) {
	lab := labtest.New(t, netlab.Topology{
		Networks: []netlab.NetworkSpec{
			{Name: "dc", NAT: netlab.Public},
			{Name: "plant", NAT: netlab.Isolated, Subnet: netip.MustParsePrefix("10.20.0.0/24")},
			{Name: "office", NAT: netlab.Easy, Forwards: []netlab.PortForward{{Port: 4833, Host: "jp", HostPort: probePort}}},
		},
		Hosts: []netlab.HostSpec{
			{Name: "server", Network: "dc"},
			{Name: "plc", Network: "plant"},
			{Name: "jp", Network: "plant", More: []netlab.Attachment{{Network: "office", Link: netlab.Link{Latency: 2 * time.Millisecond}}}},
		},
	})
	server, plc, jp := lab.Host("server"), lab.Host("plc"), lab.Host("jp")
	office := lab.Network("office")
	nics := jp.NICs()
	if len(nics) != 2 || nics[0].Network.Name() != "plant" || nics[1].Network.Name() != "office" ||
		nics[0].Addr != jp.Addr() || jp.AddrOn("office") != nics[1].Addr || jp.AddrOn("dc").IsValid() ||
		jp.Gateway() != office.Gateway() || nics[0].Name != jp.Interface() {
		t.Fatalf("jp's interfaces %+v, gateway %v", nics, jp.Gateway())
	}
	pcapPath := filepath.Join(t.TempDir(), "jp.pcap")
	capture, err := jp.Capture(pcapPath)
	if err != nil {
		t.Fatal(err)
	}
	serveProbes(t, server, probePort)
	serveProbes(t, plc, probePort)
	serveProbes(t, jp, probePort)
	srv := netip.AddrPortFrom(server.Addr(), probePort)

	// jp → the internet through the office NAT; jp → plc on the plant LAN.
	pc, err := jp.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := probe.UDP(ctxFor(t, waitLong), pc, srv); err != nil || m.Addr() != office.PublicAddr() {
		t.Fatalf("jp → server: seen as %v (%v), want the office's %v", m, err, office.PublicAddr())
	}
	if m, err := probe.UDP(ctxFor(t, waitLong), pc, netip.AddrPortFrom(plc.Addr(), probePort)); err != nil || m.Addr() != jp.Addr() {
		t.Fatalf("jp → plc: seen as %v (%v), want jp's plant address %v", m, err, jp.Addr())
	}
	// plc → jp's plant address works; plc → the internet has no route.
	pp, err := plc.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := probe.UDP(ctxFor(t, waitLong), pp, netip.AddrPortFrom(jp.Addr(), probePort)); err != nil || m.Addr() != plc.Addr() {
		t.Fatalf("plc → jp: %v %v", m, err)
	}
	if _, err := pp.WriteTo([]byte("x"), net.UDPAddrFromAddrPort(srv)); !errors.Is(err, syscall.ENETUNREACH) {
		t.Fatalf("plc → server: %v, want ENETUNREACH", err)
	}

	// The port forward: server → office:4833 reaches jp's probe (TCP and
	// UDP); another port of the office stays closed.
	fwd := netip.AddrPortFrom(office.PublicAddr(), 4833)
	c, err := server.Dial(ctxFor(t, waitLong), nil, "tcp4", fwd.String())
	if err != nil {
		t.Fatalf("server → %v: %v", fwd, err)
	}
	if m, err := probe.TCP(ctxFor(t, waitLong), c); err != nil || m.Addr() != server.Addr() {
		t.Fatalf("TCP through the forward: %v %v", m, err)
	}
	c.Close()
	ps, err := server.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	if m, err := probe.UDP(ctxFor(t, waitLong), ps, fwd); err != nil || m.Addr() != server.Addr() {
		t.Fatalf("UDP through the forward: %v %v", m, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if c, err := server.Dial(ctx, nil, "tcp4", netip.AddrPortFrom(office.PublicAddr(), 4834).String()); err == nil {
		c.Close()
		t.Fatal("an unforwarded port of the office accepted a connection")
	}

	// The capture holds frames of both interfaces: a marker to the plc
	// (plant) and one to the server (office).
	for _, m := range []struct {
		text string
		to   netip.AddrPort
	}{{"MULTI-PLANT", netip.AddrPortFrom(plc.Addr(), probePort)}, {"MULTI-OFFICE", srv}} {
		if _, err := pc.WriteTo([]byte(m.text), net.UDPAddrFromAddrPort(m.to)); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "both markers in the flushed capture", func() (bool, error) {
		if err := capture.Flush(); err != nil {
			return false, err
		}
		raw, err := os.ReadFile(pcapPath)
		return bytes.Contains(raw, []byte("MULTI-PLANT")) && bytes.Contains(raw, []byte("MULTI-OFFICE")), err
	})

	// Partition cuts both cables.
	if err := jp.Partition(); err != nil {
		t.Fatal(err)
	}
	for _, to := range []netip.AddrPort{srv, netip.AddrPortFrom(plc.Addr(), probePort)} {
		if _, err := probe.UDP(ctxFor(t, 500*time.Millisecond), pc, to); err == nil {
			t.Errorf("partitioned jp reached %v", to)
		}
	}
	st, err := jp.LinkStats()
	if err != nil || st.PartitionedIn+st.PartitionedOut == 0 {
		t.Errorf("link stats after the partition: %+v %v", st, err)
	}
	if err := jp.Heal(); err != nil {
		t.Fatal(err)
	}
	if _, err := probe.UDP(ctxFor(t, waitLong), pc, srv); err != nil {
		t.Errorf("healed jp → server: %v", err)
	}
	if err := capture.Close(); err != nil {
		t.Fatal(err)
	}
	if err := capture.Flush(); err == nil {
		t.Error("Flush after Close succeeded")
	}
}
