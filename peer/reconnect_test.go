package peer_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/network"
	lpeer "github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
	"github.com/quic-go/quic-go"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/peer"
)

// refusedDial dials a loopback port nothing listens on, as a peer dials
// its coordinator while it restarts, and returns libp2p's error wrapped as
// the daemon wraps it.
func refusedDial(t *testing.T) error {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close() // nothing listens there now
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	id, err := lpeer.IDFromPrivateKey(other)
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, PatientDials: true})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ctx = network.WithForceDirectDial(ctx, "test")
	err = h.Connect(ctx, lpeer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{ma.StringCast(fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", port))}})
	if err == nil {
		t.Fatal("connected to a closed port")
	}
	return catalog.Errorf(catalog.CodeCoordinatorDown, "(%s: %w)", id, err)
}

func TestReconnectAttemptAfterARestart(t *testing.T) {
	refused := refusedDial(t)
	other := catalog.Errorf(catalog.CodeCoordinatorDown, "(%w)", errors.New("i/o timeout"))
	for _, c := range []struct {
		name  string
		n     int
		err   error
		since time.Duration
		want  int
	}{
		{"refused soon after a session: no doubling", 6, refused, 10 * time.Second, 1},
		{"refused, first attempt", 0, refused, time.Second, 0},
		{"refused past the grace: doubling", 6, refused, peer.RestartGrace + time.Second, 6},
		{"refused, never welcomed: doubling", 6, refused, -1, 6},
		{"another error: doubling", 6, other, 10 * time.Second, 6},
		{"a QUIC stateless reset (a new process) soon after: no doubling", 6,
			catalog.Errorf(catalog.CodeCoordinatorDown, "(%w)", &quic.StatelessResetError{}), 10 * time.Second, 1},
	} {
		if got := peer.ReconnectAttempt(c.n, c.err, c.since); got != c.want {
			t.Errorf("%s: attempt %d, want %d", c.name, got, c.want)
		}
	}
}
