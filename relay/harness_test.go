package relay_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/client"
	ma "github.com/multiformats/go-multiaddr"
	"go.uber.org/goleak"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/relay"
)

func TestMain(m *testing.M) {
	// The benchmarks run the relay in a child process of this binary, so
	// its heap and its CPU time are the relay's alone.
	if runBenchChild() {
		return
	}
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/ipfs/go-log/v2/writer.(*MirrorWriter).logRoutine"),
		goleak.IgnoreTopFunction("go.opencensus.io/stats/view.(*worker).start"),
		goleak.IgnoreAnyFunction("github.com/dgraph-io/badger/v4.(*DB).monitorCache"),
	)
}

// Protocols the test hosts serve.
const (
	echoProto protocol.ID = "/jumpmesh-test/echo"
	// sinkProto reads to EOF, then answers the byte count (8 bytes, BE).
	sinkProto protocol.ID = "/jumpmesh-test/sink"
)

// relayConfig invites a relay user named name and returns the Config of its
// first run: loopback only, metrics on a free port, a short refresh.
func relayConfig(t testing.TB, site *coordinatortest.Site[*console.Client], name string) relay.Config {
	t.Helper()
	inv, err := site.Admin.InviteUser(site.Ctx(), name, pb.Role_ROLE_RELAY, time.Hour)
	if err != nil {
		t.Fatalf("invite relay %s: %v", name, err)
	}
	return relay.Config{
		DataDir:     filepath.Join(t.TempDir(), name),
		Coordinator: site.Addr,
		Invite:      inv.GetCode(),
		Listen:      []string{"/ip4/127.0.0.1/tcp/0", "/ip4/127.0.0.1/udp/0/quic-v1"},
		HTTPAddr:    "127.0.0.1:0",
		Refresh:     100 * time.Millisecond,
	}
}

// runRelay starts a relay and runs it until the test ends.
func runRelay(t testing.TB, cfg relay.Config) *relay.Relay {
	t.Helper()
	r, err := relay.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("starting relay: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("relay run: %v", err)
		}
	})
	return r
}

// member logs a technician in and returns a host with its console key. The
// console's own host leaves out the circuit relay transport (mesh.NewHost),
// which a host needs to dial or accept relayed connections.
func member(t testing.TB, site *coordinatortest.Site[*console.Client], name string, listen ...string) host.Host {
	t.Helper()
	site.User(name, pb.Role_ROLE_TECHNICIAN)
	key, err := mesh.LoadKeyFile(filepath.Join(site.Dir, "consoles", name, console.KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	return newHost(t, key, listen...)
}

// stranger is a host whose key the site has never seen.
func stranger(t testing.TB) host.Host {
	t.Helper()
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	return newHost(t, key)
}

// newHost listens on /p2p-circuit (to accept relayed connections) and on
// listen, and serves the echo and sink protocols.
func newHost(t testing.TB, key crypto.PrivKey, listen ...string) host.Host {
	t.Helper()
	addrs, err := mesh.ParseMultiaddrs(append([]string{"/p2p-circuit"}, listen...))
	if err != nil {
		t.Fatal(err)
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: addrs, Extra: []libp2p.Option{libp2p.EnableRelay()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	h.SetStreamHandler(echoProto, func(s network.Stream) {
		defer s.Close()
		_, _ = io.Copy(s, s)
	})
	h.SetStreamHandler(sinkProto, func(s network.Stream) {
		defer s.Close()
		n, err := io.Copy(io.Discard, s)
		if err != nil {
			s.Reset()
			return
		}
		_ = binary.Write(s, binary.BigEndian, n)
	})
	return h
}

// relayInfo picks the relay's TCP address out of addrs (each ending in
// /p2p/<relay>), for reservations and circuits.
func relayInfo(t testing.TB, addrs []ma.Multiaddr) peer.AddrInfo {
	t.Helper()
	for _, a := range addrs {
		if _, err := a.ValueForProtocol(ma.P_TCP); err == nil {
			info, err := peer.AddrInfoFromP2pAddr(a)
			if err != nil {
				t.Fatal(err)
			}
			return *info
		}
	}
	t.Fatalf("relay has no TCP address: %v", addrs)
	return peer.AddrInfo{}
}

// reserve asks the relay for a slot for h.
func reserve(ctx context.Context, h host.Host, relayAt peer.AddrInfo) error {
	_, err := client.Reserve(ctx, h, relayAt)
	return err
}

// dialCircuit connects src to dest through the relay only, with the
// address <relay addr>/p2p/<relay>/p2p-circuit (dest's ID goes with it).
func dialCircuit(ctx context.Context, src host.Host, relayAt peer.AddrInfo, dest peer.ID) error {
	circuit := relayAt.Addrs[0].Encapsulate(ma.StringCast("/p2p/" + relayAt.ID.String() + "/p2p-circuit"))
	return src.Connect(ctx, peer.AddrInfo{ID: dest, Addrs: []ma.Multiaddr{circuit}})
}

// sendToSink writes n bytes to dest's sink and checks the count it answers.
func sendToSink(ctx context.Context, src host.Host, dest peer.ID, n int64) (network.Stream, error) {
	s, err := src.NewStream(ctx, dest, sinkProto)
	if err != nil {
		return nil, err
	}
	chunk := make([]byte, 256<<10)
	for left := n; left > 0; left -= int64(len(chunk)) {
		if _, err := s.Write(chunk[:min(left, int64(len(chunk)))]); err != nil {
			return s, fmt.Errorf("writing to the sink: %w", err)
		}
	}
	if err := s.CloseWrite(); err != nil {
		return s, err
	}
	var got int64
	if err := binary.Read(s, binary.BigEndian, &got); err != nil {
		return s, fmt.Errorf("reading the sink's count: %w", err)
	}
	if got != n {
		return s, fmt.Errorf("sink received %d bytes, want %d", got, n)
	}
	return s, s.Close()
}

// metric scrapes the relay's /metrics for one series, e.g.
// `jumpmesh_relay_refusals_total{reason="reserve_not_member"}`; 0 if absent.
func metric(t testing.TB, addr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scraping metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
			if err != nil {
				t.Fatalf("metric %s: %v", series, err)
			}
			return v
		}
	}
	return 0
}

func refusals(t testing.TB, r *relay.Relay, reason string) float64 {
	return metric(t, r.HTTPAddr(), `jumpmesh_relay_refusals_total{reason="`+reason+`"}`)
}
