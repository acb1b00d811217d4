package mesh

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// TestShortLivedKey: a ShortLivedKey signs exactly as crypto/ed25519 does
// (Ed25519 is deterministic, so any slip in the arithmetic shows as
// different bytes): RFC 8032's test vectors, then random keys and
// messages; and it is the same identity as the key it wraps.
func TestShortLivedKey(t *testing.T) {
	// RFC 8032 section 7.1, tests 1–3: secret key, public key, message, signature.
	for i, v := range [][4]string{
		{"9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60", "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
			"e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"},
		{"4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb", "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
			"92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"},
		{"c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7", "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
			"6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"},
	} {
		raw := append(unhex(t, v[0]), unhex(t, v[1])...)
		k, err := crypto.UnmarshalEd25519PrivateKey(raw)
		if err != nil {
			t.Fatal(err)
		}
		sig, err := ShortLivedKey(k).Sign(unhex(t, v[2]))
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(sig); got != v[3] {
			t.Errorf("RFC 8032 test %d: signature %s, want %s", i+1, got, v[3])
		}
	}

	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		seed := make([]byte, ed25519.SeedSize)
		for j := range seed {
			seed[j] = byte(rng.Uint32())
		}
		std := ed25519.NewKeyFromSeed(seed)
		k, err := crypto.UnmarshalEd25519PrivateKey(std)
		if err != nil {
			t.Fatal(err)
		}
		msg := make([]byte, rng.IntN(300))
		for j := range msg {
			msg[j] = byte(rng.Uint32())
		}
		short := ShortLivedKey(k)
		sig, err := short.Sign(msg)
		if err != nil {
			t.Fatal(err)
		}
		if want := ed25519.Sign(std, msg); !bytes.Equal(sig, want) {
			t.Fatalf("key %d, message of %d bytes: signature %x, crypto/ed25519's %x", i, len(msg), sig, want)
		}
		if ok, err := k.GetPublic().Verify(msg, sig); !ok || err != nil {
			t.Fatalf("key %d: the key's public key does not verify the signature (%v)", i, err)
		}
		if i == 0 {
			sameIdentity(t, k, short)
		}
	}
}

// sameIdentity: the wrapper is the wrapped key to libp2p (peer ID, type,
// bytes, equality both ways).
func sameIdentity(t *testing.T, k, short crypto.PrivKey) {
	t.Helper()
	if short.Type() != crypto.Ed25519 || !k.Equals(short) || !short.Equals(k) {
		t.Fatalf("the short-lived key is not the key it wraps (type %v)", short.Type())
	}
	want, _ := k.Raw()
	if got, _ := short.Raw(); !bytes.Equal(got, want) {
		t.Fatal("raw bytes differ")
	}
	id, _ := peer.IDFromPrivateKey(k)
	if got, _ := peer.IDFromPrivateKey(short); got != id {
		t.Fatalf("peer ID %s, want %s", got, id)
	}
	if m1, _ := crypto.MarshalPrivateKey(k); !bytes.Equal(m1, func() []byte { m, _ := crypto.MarshalPrivateKey(short); return m }()) {
		t.Fatal("marshalled keys differ")
	}
}

// TestShortLivedKeyLeavesOtherTypes: a key that is not Ed25519 comes back
// as it is.
func TestShortLivedKeyLeavesOtherTypes(t *testing.T) {
	k, _, err := crypto.GenerateSecp256k1Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	if ShortLivedKey(k) != k {
		t.Fatal("a secp256k1 key was wrapped")
	}
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// BenchmarkShortLivedSign is one signature of a ShortLivedKey against the
// same key's own (crypto/ed25519, its base-point table already built):
// the ratio is what a process pays per signature past the first; the
// table itself (once per process) is what ShortLivedKey saves.
func BenchmarkShortLivedSign(b *testing.B) {
	k, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		b.Fatal(err)
	}
	msg := []byte("libp2p-tls-handshake:0123456789abcdef0123456789abcdef")
	for _, c := range []struct {
		name string
		key  crypto.PrivKey
	}{{"ed25519-table", k}, {"short-lived", ShortLivedKey(k)}} {
		b.Run(c.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := c.key.Sign(msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestShortLivedHost: a host built ShortLived holds its key as a
// ShortLivedKey, and a daemon's host (not ShortLived) holds the key as it
// was given; the short-lived host connects to the other over TCP (TLS) and
// QUIC, each side authenticating the other's peer ID.
func TestShortLivedHost(t *testing.T) {
	hosts := make([]host.Host, 2)
	for i, short := range []bool{true, false} {
		k, _, err := crypto.GenerateEd25519Key(nil)
		if err != nil {
			t.Fatal(err)
		}
		h, err := NewHost(HostConfig{Key: k, ShortLived: short, ListenAddrs: []ma.Multiaddr{
			ma.StringCast("/ip4/127.0.0.1/tcp/0"), ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		hosts[i] = h
		_, wrapped := h.Peerstore().PrivKey(h.ID()).(shortLivedEd25519)
		if wrapped != short {
			t.Fatalf("host %d (ShortLived %v): its key is a ShortLivedKey: %v", i, short, wrapped)
		}
	}
	short, daemon := hosts[0], hosts[1]
	for _, proto := range []int{ma.P_TCP, ma.P_QUIC_V1} {
		var addrs []ma.Multiaddr
		for _, a := range daemon.Addrs() {
			if _, err := a.ValueForProtocol(proto); err == nil {
				addrs = append(addrs, a)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := short.Connect(ctx, peer.AddrInfo{ID: daemon.ID(), Addrs: addrs})
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", ma.ProtocolWithCode(proto).Name, err)
		}
		conns := daemon.Network().ConnsToPeer(short.ID())
		if len(conns) == 0 || conns[len(conns)-1].RemotePeer() != short.ID() {
			t.Fatalf("%s: the daemon's host does not see the short-lived host's peer ID", ma.ProtocolWithCode(proto).Name)
		}
		for _, c := range short.Network().ConnsToPeer(daemon.ID()) {
			c.Close()
		}
	}
}
