package wake_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/wake"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func newSigner(tb testing.TB) *mesh.KeySigner {
	tb.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := mesh.NewKeySigner(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

func newID(tb testing.TB) peer.ID { return newSigner(tb).PeerID() }

// body is a command for target, valid for 30 s from now.
func body(target peer.ID, now time.Time) *pb.WakeBody {
	return &pb.WakeBody{
		TargetId:          []byte(target),
		ExpiresUnixMillis: now.Add(30 * time.Second).UnixMilli(),
		Macs:              []string{"02:00:00:00:00:01"},
		GatewayIp:         "10.0.0.1",
	}
}

func sign(tb testing.TB, s mesh.Signer, b *pb.WakeBody) *pb.WakeCommand {
	tb.Helper()
	cmd, err := wake.Sign(s, b)
	if err != nil {
		tb.Fatal(err)
	}
	return cmd
}

func TestSignVerify(t *testing.T) {
	site, other := newSigner(t), newSigner(t)
	target := newID(t)
	cmd := sign(t, site, body(target, t0))

	got, err := wake.Verify(cmd, site.PeerID(), target, t0)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if peer.ID(got.GetSiteId()) != site.PeerID() || len(got.GetNonce()) != wake.NonceSize || got.GetGatewayIp() != "10.0.0.1" {
		t.Fatalf("body %v", got)
	}
	if _, err := wake.Verify(cmd, site.PeerID(), "", t0); err != nil {
		t.Fatalf("Verify for any target: %v", err)
	}
	again := sign(t, site, body(target, t0))
	if b2, _ := wake.Verify(again, site.PeerID(), target, t0); bytes.Equal(b2.GetNonce(), got.GetNonce()) {
		t.Fatal("two commands share a nonce")
	}

	tampered := proto.Clone(cmd).(*pb.WakeCommand)
	tampered.Body = append([]byte(nil), cmd.Body...)
	tampered.Body[len(tampered.Body)-1] ^= 1
	badSig := proto.Clone(cmd).(*pb.WakeCommand)
	badSig.Signature = append([]byte(nil), cmd.Signature...)
	badSig.Signature[0] ^= 1
	// A grant-style signature over the bare body (no domain) is no command.
	raw := cmd.GetBody()
	bare, _ := site.Sign(raw)
	noDomain := &pb.WakeCommand{Body: raw, Signature: bare}
	// Another site signing a body that claims our site.
	claim := body(target, t0)
	claim.SiteId = []byte(site.PeerID())
	claim.Nonce = bytes.Repeat([]byte{7}, wake.NonceSize)
	claimRaw, _ := proto.Marshal(claim)
	otherSig, _ := other.Sign(append([]byte("jumpmesh wake v1\n"), claimRaw...))
	impostor := &pb.WakeCommand{Body: claimRaw, Signature: otherSig}
	shortNonce := body(target, t0)
	shortNonce.Nonce = []byte{1, 2, 3}

	for _, c := range []struct {
		name   string
		cmd    *pb.WakeCommand
		site   peer.ID
		target peer.ID
		now    time.Time
		want   error
	}{
		{"nil", nil, site.PeerID(), target, t0, wake.ErrMalformed},
		{"empty", &pb.WakeCommand{}, site.PeerID(), target, t0, wake.ErrMalformed},
		{"no signature", &pb.WakeCommand{Body: cmd.Body}, site.PeerID(), target, t0, wake.ErrMalformed},
		{"body not protobuf", &pb.WakeCommand{Body: []byte{0xff, 0xff}, Signature: cmd.Signature}, site.PeerID(), target, t0, wake.ErrMalformed},
		{"tampered body", tampered, site.PeerID(), target, t0, wake.ErrSignature},
		{"bad signature", badSig, site.PeerID(), target, t0, wake.ErrSignature},
		{"no signing domain", noDomain, site.PeerID(), target, t0, wake.ErrSignature},
		{"signed by another key", impostor, site.PeerID(), target, t0, wake.ErrSignature},
		{"another site", sign(t, other, body(target, t0)), site.PeerID(), target, t0, wake.ErrOtherSite},
		{"another target", cmd, site.PeerID(), newID(t), t0, wake.ErrOtherTarget},
		{"short nonce", sign(t, site, shortNonce), site.PeerID(), target, t0, wake.ErrMalformed},
		{"expired", cmd, site.PeerID(), target, t0.Add(30 * time.Second), wake.ErrExpired},
		{"long expired", cmd, site.PeerID(), target, t0.Add(time.Hour), wake.ErrExpired},
		{"valid too long", cmd, site.PeerID(), target, t0.Add(-time.Minute), wake.ErrTooLong},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := wake.Verify(c.cmd, c.site, c.target, c.now)
			if !errors.Is(err, c.want) || !errors.Is(err, wake.ErrInvalid) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
		})
	}

	// Clock skew: a command up to MaxValidity + 5 s away passes.
	edge := body(target, t0)
	edge.ExpiresUnixMillis = t0.Add(wake.MaxValidity + 5*time.Second).UnixMilli()
	if _, err := wake.Verify(sign(t, site, edge), site.PeerID(), target, t0); err != nil {
		t.Fatalf("at the validity bound: %v", err)
	}
}

func TestSignKeepsCallersBody(t *testing.T) {
	site := newSigner(t)
	b := body(newID(t), t0)
	sign(t, site, b)
	if len(b.GetNonce()) != 0 || len(b.GetSiteId()) != 0 {
		t.Fatal("Sign changed the caller's body")
	}
	b.Nonce = bytes.Repeat([]byte{9}, wake.NonceSize)
	got, err := wake.Verify(sign(t, site, b), site.PeerID(), "", t0)
	if err != nil || !bytes.Equal(got.GetNonce(), b.Nonce) {
		t.Fatalf("a given nonce is kept: %v %x", err, got.GetNonce())
	}
}

func TestEncodeDecode(t *testing.T) {
	site := newSigner(t)
	cmd := sign(t, site, body(newID(t), t0))
	b, err := wake.Encode(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte(wake.Magic)) || len(b) > wake.MaxCommand {
		t.Fatalf("encoded %q", b)
	}
	got, err := wake.Decode(b)
	if err != nil || !proto.Equal(got, cmd) {
		t.Fatalf("Decode = %v, %v", got, err)
	}

	big := &pb.WakeCommand{Body: make([]byte, wake.MaxCommand), Signature: []byte{1}}
	if _, err := wake.Encode(big); err == nil {
		t.Fatal("Encode took a command over MaxCommand")
	}
	for name, in := range map[string][]byte{
		"empty":       nil,
		"magic only":  []byte(wake.Magic),
		"no magic":    b[len(wake.Magic):],
		"other magic": append([]byte("JMWAKE2\n"), b[len(wake.Magic):]...),
		"oversized":   append(append([]byte(nil), b...), make([]byte, wake.MaxCommand)...),
		"not proto":   append([]byte(wake.Magic), 0xff, 0xff, 0xff),
	} {
		if _, err := wake.Decode(in); !errors.Is(err, wake.ErrMalformed) {
			t.Errorf("%s: Decode = %v, want ErrMalformed", name, err)
		}
	}
}

func TestStreamFrame(t *testing.T) {
	site := newSigner(t)
	cmd := sign(t, site, body(newID(t), t0))
	f, err := wake.StreamFrame(cmd)
	if err != nil {
		t.Fatal(err)
	}
	n := int(binary.BigEndian.Uint16(f))
	if n != len(f)-2 {
		t.Fatalf("frame length %d, %d bytes follow", n, len(f)-2)
	}
	got, err := wake.Decode(f[2:])
	if err != nil || !proto.Equal(got, cmd) {
		t.Fatalf("Decode(frame) = %v, %v", got, err)
	}
}

// TestLargestCommandFits: the command MaxCommand's doc describes fits:
// 8 MACs, 8 IPv6 target IPs, 8 IPv6 passive addresses and a password.
func TestLargestCommandFits(t *testing.T) {
	site := newSigner(t)
	b := body(newID(t), t0)
	b.Macs, b.TargetIps, b.PassiveAddrs = nil, nil, nil
	for range 8 {
		b.Macs = append(b.Macs, "aa:bb:cc:dd:ee:ff")
		b.TargetIps = append(b.TargetIps, "fd00:1234:5678:9abc:def0:1234:5678:9abc")
		b.PassiveAddrs = append(b.PassiveAddrs, "[fd00:1234:5678:9abc:def0:1234:5678:9abc]:5832")
	}
	b.Secureon = make([]byte, 6)
	b.GatewayIp = "fd00:1234:5678:9abc:def0:1234:5678:9abc"
	enc, err := wake.Encode(sign(t, site, b))
	if err != nil {
		t.Fatalf("largest command: %v", err)
	}
	t.Logf("largest command: %d bytes of %d", len(enc), wake.MaxCommand)
	// Twice as many addresses do not fit: Sign says so.
	b.PassiveAddrs = append(b.PassiveAddrs, b.PassiveAddrs...)
	if _, err := wake.Sign(site, b); err == nil {
		t.Fatal("Sign made a command over MaxCommand")
	}
}

func TestMagicPacket(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	for _, pw := range [][]byte{nil, {1, 2, 3, 4}, {1, 2, 3, 4, 5, 6}} {
		p := wake.MagicPacket(mac, pw)
		if len(p) != 102+len(pw) || !bytes.Equal(p[:6], bytes.Repeat([]byte{0xff}, 6)) {
			t.Fatalf("packet %x", p)
		}
		for k := range 16 {
			if !bytes.Equal(p[6+6*k:12+6*k], mac) {
				t.Fatalf("repetition %d: %x", k, p[6+6*k:12+6*k])
			}
		}
		gotMAC, gotPW, ok := wake.ParseMagicPacket(p)
		if !ok || !bytes.Equal(gotMAC, mac) || !bytes.Equal(gotPW, pw) {
			t.Fatalf("ParseMagicPacket(%x) = %s %x %v", p, gotMAC, gotPW, ok)
		}
		// Inside a longer payload, after other bytes (e.g. a header).
		framed := append([]byte{0xff, 0xff, 1, 2, 3}, p...)
		if gotMAC, gotPW, ok := wake.ParseMagicPacket(framed); !ok || !bytes.Equal(gotMAC, mac) || !bytes.Equal(gotPW, pw) {
			t.Fatalf("offset: %s %x %v", gotMAC, gotPW, ok)
		}
	}
	// Seven 0xFF bytes before the MAC still sync.
	p := append([]byte{0xff}, wake.MagicPacket(mac, nil)...)
	if got, _, ok := wake.ParseMagicPacket(p); !ok || !bytes.Equal(got, mac) {
		t.Fatalf("extra sync byte: %s %v", got, ok)
	}
}

func TestParseMagicPacketRefuses(t *testing.T) {
	mac := net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}
	good := wake.MagicPacket(mac, nil)
	broken := append([]byte(nil), good...)
	broken[6+6*15] ^= 1 // the last repetition differs
	allFF := bytes.Repeat([]byte{0xff}, 102)
	for name, in := range map[string][]byte{
		"empty":      nil,
		"short":      good[:101],
		"broken":     broken,
		"all 0xff":   allFF,
		"no sync":    append([]byte{0xfe}, good[1:]...),
		"zero bytes": make([]byte, 200),
	} {
		if m, _, ok := wake.ParseMagicPacket(in); ok {
			t.Errorf("%s: parsed MAC %s", name, m)
		}
	}
}

func TestParsePassword(t *testing.T) {
	for _, s := range []string{"01-23-45-67-89-AB", "01:23:45:67:89:ab", "01-23-45-67-89-ab", "0123456789AB"} {
		p, err := wake.ParsePassword(s)
		if err != nil || !bytes.Equal(p, []byte{1, 0x23, 0x45, 0x67, 0x89, 0xab}) {
			t.Fatalf("ParsePassword(%q) = %x, %v", s, p, err)
		}
		if f := wake.FormatPassword(p); f != "01-23-45-67-89-AB" {
			t.Fatalf("FormatPassword = %q", f)
		}
	}
	if p, err := wake.ParsePassword(""); err != nil || p != nil {
		t.Fatalf("empty: %x, %v", p, err)
	}
	for _, s := range []string{"01-23-45-67-89", "01-23-45-67-89-AB-CD", "01-23-45-67-89-AB-CD-EF", "zz-23-45-67-89-AB", "hello", "01-23-45-67-89-ABC"} {
		if p, err := wake.ParsePassword(s); err == nil {
			t.Errorf("ParsePassword(%q) = %x, want an error", s, p)
		}
	}
}
