package netlab_test

import (
	"bytes"
	"encoding/binary"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/netlab"
	"github.com/jumpmesh/jumpmesh/sim/netlab/labtest"
)

// TestCapture: a capture on a host's interface records, in a pcap file
// tcpdump can read, the frames the host sends and receives.
func TestCapture(t *testing.T) {
	lab := labtest.New(t, netlab.Topology{
		Networks: []netlab.NetworkSpec{{Name: "home", NAT: netlab.Easy}},
		Hosts:    []netlab.HostSpec{{Name: "a", Network: "home"}, {Name: "b", Network: "home"}},
	})
	a, b := lab.Host("a"), lab.Host("b")
	path := filepath.Join(t.TempDir(), "a.pcap")
	c, err := a.Capture(path)
	if err != nil {
		t.Fatal(err)
	}
	pb, err := b.ListenPacket("udp4", ":7000")
	if err != nil {
		t.Fatal(err)
	}
	pa, err := a.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	to := &net.UDPAddr{IP: b.Addr().AsSlice(), Port: 7000}
	if _, err := pa.WriteTo([]byte("PCAP-OUT"), to); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = pb.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, from, err := pb.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "PCAP-OUT" {
		t.Fatalf("b got %q %v", buf[:n], err)
	}
	if _, err := pb.WriteTo([]byte("PCAP-BACK"), from); err != nil {
		t.Fatal(err)
	}
	_ = pa.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, _, err := pa.ReadFrom(buf); err != nil || string(buf[:n]) != "PCAP-BACK" {
		t.Fatalf("a got %q %v", buf[:n], err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw) < 24 || binary.LittleEndian.Uint32(raw) != 0xa1b2c3d4 || binary.LittleEndian.Uint32(raw[20:]) != 1 {
		t.Fatalf("not a pcap file with Ethernet frames: % x", raw[:min(24, len(raw))])
	}
	var frames [][]byte
	for off := 24; off+16 <= len(raw); {
		kept := int(binary.LittleEndian.Uint32(raw[off+8:]))
		if off+16+kept > len(raw) {
			t.Fatalf("a record runs past the end of the file at %d", off)
		}
		frames = append(frames, raw[off+16:off+16+kept])
		off += 16 + kept
	}
	if len(frames) != c.Frames() {
		t.Fatalf("%d records, capture says %d", len(frames), c.Frames())
	}
	for _, want := range []string{"PCAP-OUT", "PCAP-BACK"} {
		found := false
		for _, f := range frames {
			found = found || bytes.Contains(f, []byte(want))
		}
		if !found {
			t.Errorf("no frame carries %q (%d frames)", want, len(frames))
		}
	}
}
