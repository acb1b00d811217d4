package wake

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// The fuzz targets use fixed keys and a fixed clock, so the corpus's
// valid commands stay valid.
var fuzzNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func fuzzSigner(tb testing.TB, seed byte) *mesh.KeySigner {
	tb.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	key, err := crypto.UnmarshalEd25519PrivateKey(priv)
	if err != nil {
		tb.Fatal(err)
	}
	s, err := mesh.NewKeySigner(key)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// fuzzKeys: the site, the passive peer, another site.
func fuzzKeys(tb testing.TB) (site, self, other *mesh.KeySigner) {
	return fuzzSigner(tb, 1), fuzzSigner(tb, 2), fuzzSigner(tb, 3)
}

// fuzzCommands are signed commands for the seed corpus: a valid one for
// self, and ones each cheap check refuses.
func fuzzCommands(tb testing.TB) [][]byte {
	site, self, other := fuzzKeys(tb)
	mk := func(s *mesh.KeySigner, nonce byte, edit func(*pb.WakeBody)) []byte {
		b := &pb.WakeBody{
			TargetId:          []byte(self.PeerID()),
			Nonce:             bytes.Repeat([]byte{nonce}, NonceSize),
			ExpiresUnixMillis: fuzzNow.Add(30 * time.Second).UnixMilli(),
			Macs:              []string{"02:00:00:00:00:01"},
			Secureon:          []byte{1, 2, 3, 4, 5, 6},
			GatewayIp:         "10.0.0.1",
			TargetIps:         []string{"10.0.0.7"},
			PassiveAddrs:      []string{"10.0.0.7:5832"},
		}
		if edit != nil {
			edit(b)
		}
		cmd, err := Sign(s, b)
		if err != nil {
			tb.Fatal(err)
		}
		enc, err := Encode(cmd)
		if err != nil {
			tb.Fatal(err)
		}
		return enc
	}
	return [][]byte{
		mk(site, 1, nil),
		mk(other, 2, nil),
		mk(site, 3, func(b *pb.WakeBody) { b.TargetId = []byte(other.PeerID()) }),
		mk(site, 4, func(b *pb.WakeBody) { b.ExpiresUnixMillis = fuzzNow.Add(-time.Second).UnixMilli() }),
		mk(site, 5, func(b *pb.WakeBody) { b.ExpiresUnixMillis = fuzzNow.Add(time.Hour).UnixMilli() }),
		mk(site, 6, func(b *pb.WakeBody) { b.Nonce = []byte{1} }),
	}
}

func streamFrame(b []byte) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)
}

func FuzzDecode(f *testing.F) {
	for _, c := range fuzzCommands(f) {
		f.Add(c)
		f.Add(c[:len(c)/2])
	}
	f.Add([]byte(Magic))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cmd, err := Decode(b)
		if err != nil {
			if cmd != nil {
				t.Fatal("a command with an error")
			}
			return
		}
		if len(b) > MaxCommand || !bytes.HasPrefix(b, []byte(Magic)) {
			t.Fatalf("decoded %d bytes without the magic or over the bound", len(b))
		}
		enc, err := Encode(cmd)
		if err != nil {
			return // unknown fields dropped or re-encoded larger: fine
		}
		again, err := Decode(enc)
		if err != nil || !proto.Equal(again, cmd) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

func FuzzVerify(f *testing.F) {
	site, self, _ := fuzzKeys(f)
	for _, c := range fuzzCommands(f) {
		cmd, err := Decode(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(cmd.GetBody(), cmd.GetSignature())
	}
	f.Add([]byte{}, []byte{})
	valid, _ := Decode(fuzzCommands(f)[0])
	f.Fuzz(func(t *testing.T, body, sig []byte) {
		got, err := Verify(&pb.WakeCommand{Body: body, Signature: sig}, site.PeerID(), self.PeerID(), fuzzNow)
		if err == nil {
			// Only the site's own signed body passes.
			if !bytes.Equal(body, valid.GetBody()) || got == nil {
				t.Fatalf("accepted a body the site did not sign: %x", body)
			}
		}
	})
}

func FuzzParseMagicPacket(f *testing.F) {
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	f.Add(MagicPacket(mac, nil))
	f.Add(MagicPacket(mac, []byte{1, 2, 3, 4}))
	f.Add(MagicPacket(mac, []byte{1, 2, 3, 4, 5, 6}))
	f.Add(append([]byte{0xff, 0xff, 0xff}, MagicPacket(mac, nil)...))
	f.Add(bytes.Repeat([]byte{0xff}, 120))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, pw, ok := ParseMagicPacket(b)
		if !ok {
			if m != nil || pw != nil {
				t.Fatal("a result without ok")
			}
			return
		}
		if len(m) != 6 || (len(pw) != 0 && len(pw) != 4 && len(pw) != 6) {
			t.Fatalf("mac %x, password %x", m, pw)
		}
		if !bytes.Contains(b, MagicPacket(m, pw)) {
			t.Fatalf("parsed %s/%x, not in the input", m, pw)
		}
	})
}

// FuzzPassiveInput feeds the passive listener's decision path what a TCP
// connection (a frame) and a UDP datagram could carry. Each input is
// counted exactly once, only the corpus's valid command wakes, and at most
// one signature check is made per input.
func FuzzPassiveInput(f *testing.F) {
	for _, c := range fuzzCommands(f) {
		f.Add(streamFrame(c))
		f.Add(c)
	}
	f.Add([]byte{0xff, 0xff})
	f.Add([]byte{0x00, 0x09, 'J', 'M', 'W', 'A', 'K', 'E', '1', '\n', 0})
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	site, self, _ := fuzzKeys(f)
	valid, _ := Decode(fuzzCommands(f)[0])
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := newPassive(PassiveConfig{Site: site.PeerID(), Self: self.PeerID(), Now: func() time.Time { return fuzzNow }})
		if err != nil {
			t.Fatal(err)
		}
		p.serveStream(bytes.NewReader(b), "fuzz")
		p.consider(b, "fuzz")
		s := p.Stats()
		total := s.Accepted + s.Garbage + s.Oversized + s.Forged + s.OtherSite + s.OtherTarget +
			s.Expired + s.TooLong + s.Replayed + s.Duplicate + s.RateLimited
		if total != 2 || s.Checked > 2 {
			t.Fatalf("two inputs, counted %d with %d checks: %+v", total, s.Checked, s)
		}
		for range s.Accepted {
			woken := <-p.Woken()
			if !bytes.Equal(woken.GetNonce(), mustBody(t, valid).GetNonce()) {
				t.Fatalf("woken by a command the corpus did not sign: %v", woken)
			}
		}
	})
}

func mustBody(t *testing.T, cmd *pb.WakeCommand) *pb.WakeBody {
	b := new(pb.WakeBody)
	if err := proto.Unmarshal(cmd.GetBody(), b); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestWriteFuzzCorpus rewrites testdata/fuzz from fuzzCommands when
// WAKE_WRITE_CORPUS=1 (after a change to the command format).
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("WAKE_WRITE_CORPUS") != "1" {
		t.Skip("set WAKE_WRITE_CORPUS=1 to rewrite testdata/fuzz")
	}
	write := func(target string, i int, vals ...[]byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		buf.WriteString("go test fuzz v1\n")
		for _, v := range vals {
			fmt.Fprintf(&buf, "[]byte(%q)\n", v)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mac := net.HardwareAddr{0x02, 0x42, 0xac, 0x11, 0, 2}
	for i, c := range fuzzCommands(t) {
		write("FuzzDecode", i, c)
		write("FuzzPassiveInput", 2*i, streamFrame(c))
		write("FuzzPassiveInput", 2*i+1, c)
		cmd, _ := Decode(c)
		write("FuzzVerify", i, cmd.GetBody(), cmd.GetSignature())
	}
	// A real magic packet inside a captured UDP datagram's IP packet.
	ipUDP := append(bytes.Repeat([]byte{0x45}, 28), MagicPacket(mac, []byte{0xde, 0xad, 0xbe, 0xef})...)
	write("FuzzParseMagicPacket", 0, ipUDP)
	write("FuzzParseMagicPacket", 1, append(MagicPacket(mac, nil), make([]byte, 18)...))
}
