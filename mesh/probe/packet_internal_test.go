package probe

import (
	"bytes"
	"testing"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestPacketRoundTrip: a sealed packet opens under its key, with its
// fields, and starts with a byte whose QUIC fixed bit is clear.
func TestPacketRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	for _, p := range []packet{{typ: typeOpener, index: 255}, {typ: typeProbe, port: 65535}} {
		b := seal(key, p)
		if len(b) != packetSize || b[0]&0x40 != 0 {
			t.Fatalf("packet %x: size %d, first byte %#x", b, len(b), b[0])
		}
		got, ok := open(key, b)
		if !ok || got != p {
			t.Fatalf("open(seal(%+v)) = %+v, %v", p, got, ok)
		}
		if bytes.Equal(b, seal(key, p)) {
			t.Fatal("two packets with the same content are equal: no fresh nonce")
		}
	}
}

// TestPacketForgeries: a stranger's packets do not verify: another key,
// any byte changed, truncated or padded, an unknown type.
func TestPacketForgeries(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	b := seal(key, packet{typ: typeProbe, port: 4000})
	if _, ok := open(bytes.Repeat([]byte{8}, KeySize), b); ok {
		t.Error("a packet opens under another key")
	}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		if _, ok := open(key, c); ok {
			t.Errorf("a packet with byte %d changed opens", i)
		}
	}
	if _, ok := open(key, b[:len(b)-1]); ok {
		t.Error("a truncated packet opens")
	}
	if _, ok := open(key, append(bytes.Clone(b), 0)); ok {
		t.Error("a padded packet opens")
	}
	if _, ok := open(key, seal(key, packet{typ: 3})); ok {
		t.Error("a packet of an unknown type opens")
	}
}

func FuzzOpen(f *testing.F) {
	key := bytes.Repeat([]byte{7}, KeySize)
	f.Add(seal(key, packet{typ: typeOpener, index: 3}))
	f.Add([]byte{0x00, 'J', 'M', 'P'})
	f.Fuzz(func(t *testing.T, b []byte) {
		if p, ok := open(key, b); ok && p.typ != typeOpener && p.typ != typeProbe {
			t.Fatalf("opened a packet of type %d", p.typ)
		}
	})
}

// TestRoles follows the design's rule.
func TestRoles(t *testing.T) {
	const m, ip = "198.51.100.7:4001", "198.51.100.7"
	side := func(kind, mapping string) *pb.ProbeSide { return &pb.ProbeSide{Kind: kind, UdpMapping: mapping} }
	// hard is a side that saw its own UDP mapping (UDPSide: a public IP,
	// and the last flow's mapping when there was one).
	hard := func(kind, mapping string) *pb.ProbeSide {
		return &pb.ProbeSide{Kind: kind, UdpMapping: mapping, PublicIp: ip}
	}
	for _, c := range []struct {
		peer, console *pb.ProbeSide
		want          pb.ProbeStart_Hard
	}{
		{hard("random", ""), side("endpoint-independent", m), pb.ProbeStart_PEER},
		{hard("random", ""), side("unknown", m), pb.ProbeStart_PEER},
		{hard("random", ""), side("endpoint-independent", ""), pb.ProbeStart_NONE},   // nothing to send openers to
		{side("endpoint-independent", m), hard("random", ""), pb.ProbeStart_CONSOLE}, // the console is hard
		{side("endpoint-independent", m), hard("unknown", m), pb.ProbeStart_CONSOLE},
		{side("endpoint-independent", m), hard("", ""), pb.ProbeStart_CONSOLE},
		{side("endpoint-independent", m), hard("sequential", m), pb.ProbeStart_CONSOLE}, // its sockets take new ports too
		{side("unknown", m), hard("sequential", m), pb.ProbeStart_CONSOLE},
		// A side that saw no UDP mapping of its own is never hard: a
		// console behind a NAT that drops UDP tells kind "" (its QUIC
		// observations failed), and took the TCP punch's attempts.
		{side("endpoint-independent", m), side("", ""), pb.ProbeStart_NONE},
		{side("endpoint-independent", m), side("unknown", ""), pb.ProbeStart_NONE},
		{side("random", ""), side("endpoint-independent", m), pb.ProbeStart_NONE},
		{side("unknown", m), side("random", ""), pb.ProbeStart_NONE},
		{side("sequential", m), hard("random", ""), pb.ProbeStart_NONE}, // a sequential easy side's probes leave from new ports
		{hard("random", ""), side("sequential", m), pb.ProbeStart_NONE}, // (the lab's grid: 1,024 probes for nothing)
		{side("unknown", m), hard("random", ""), pb.ProbeStart_CONSOLE},
		{side("endpoint-independent", ""), hard("random", ""), pb.ProbeStart_NONE},
		{hard("random", m), hard("random", m), pb.ProbeStart_NONE},
		{hard("blocked", m), hard("random", m), pb.ProbeStart_NONE},
		{hard("random", m), hard("blocked", m), pb.ProbeStart_NONE},
		{hard("endpoint-independent", m), hard("endpoint-independent", m), pb.ProbeStart_NONE},
		{nil, nil, pb.ProbeStart_NONE},
	} {
		if got := Roles(c.peer, c.console); got != c.want {
			t.Errorf("Roles(%v, %v) = %s, want %s", c.peer, c.console, got, c.want)
		}
	}
}
