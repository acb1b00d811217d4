package mesh

import (
	"bytes"
	"crypto/rand"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	ma "github.com/multiformats/go-multiaddr"
)

// TestSharedUDP: a datagram that is not QUIC, sent on one host's QUIC
// listening socket, leaves from its QUIC port and is read on the other's.
func TestSharedUDP(t *testing.T) {
	a, b := quicHost(t), quicHost(t)
	pa, err := SharedUDP(a, "udp4")
	if err != nil {
		t.Fatal(err)
	}
	defer pa.Close()
	pb, err := SharedUDP(b, "udp4")
	if err != nil {
		t.Fatal(err)
	}
	defer pb.Close()
	msg := []byte{0x00, 'J', 'M', 'P', 1, 2, 3}
	to := pb.LocalAddr()
	if _, err := pa.WriteTo(msg, to); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			pb.Close() // ends the read: the datagram never came
		}
	}()
	buf := make([]byte, 64)
	n, from, err := pb.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf[:n], msg) {
		t.Fatalf("read %x, want %x", buf[:n], msg)
	}
	if from.(*net.UDPAddr).Port != pa.LocalAddr().(*net.UDPAddr).Port {
		t.Fatalf("sent from %v, want the QUIC listening port %v", from, pa.LocalAddr())
	}
	// A host built without a QUIC transport has nothing to share.
	if _, err := SharedUDP(a, "udp6"); err == nil {
		t.Fatal("SharedUDP udp6 on a host listening on IPv4 only: no error")
	}
}

func quicHost(t *testing.T) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	h, err := NewHost(HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/udp/0/quic-v1")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}
