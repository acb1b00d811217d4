package tunnel_test

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/tunnel"
)

// The jumpoint benchmarks of issue #13 (docs/performance.md, "Jumpoints"):
// throughput through a jumpoint against the same hosts connected directly,
// and what a jumpoint spends per peer behind it and per session, with the
// jumpoint's tunnel server in a child process of its own.

// Stream protocols of the throughput benchmark, served by the peer host:
// sink reads to EOF and answers the byte count; source reads a count and
// sends that many bytes.
const (
	sinkProto   protocol.ID = "/jumpmesh/bench/sink/1"
	sourceProto protocol.ID = "/jumpmesh/bench/source/1"
	benchChunk              = 64 << 20
)

func benchHost(b *testing.B, cfg mesh.HostConfig) host.Host {
	b.Helper()
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Key = key
	h, err := mesh.NewHost(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	return h
}

// serveSinkAndSource makes h the far end of the throughput streams.
func serveSinkAndSource(h host.Host) {
	h.SetStreamHandler(sinkProto, func(s network.Stream) {
		defer s.Close()
		n, err := io.Copy(io.Discard, s)
		if err != nil {
			s.Reset()
			return
		}
		_ = binary.Write(s, binary.BigEndian, n)
	})
	h.SetStreamHandler(sourceProto, func(s network.Stream) {
		defer s.Close()
		var n int64
		if err := binary.Read(s, binary.BigEndian, &n); err != nil {
			s.Reset()
			return
		}
		buf := make([]byte, 256<<10)
		for n > 0 {
			w, err := s.Write(buf[:min(n, int64(len(buf)))])
			if err != nil {
				s.Reset()
				return
			}
			n -= int64(w)
		}
	})
}

// transfer moves n bytes between from and peer p, sent by from (up) or
// by p (down), as a forward's stream does, and returns the wall time until
// the receiver had them all.
func transfer(from host.Host, p peer.ID, n int64, up bool) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	if up {
		s, err := from.NewStream(ctx, p, sinkProto)
		if err != nil {
			return 0, err
		}
		defer s.Close()
		buf := make([]byte, 256<<10)
		for left := n; left > 0; {
			w, err := s.Write(buf[:min(left, int64(len(buf)))])
			if err != nil {
				return 0, err
			}
			left -= int64(w)
		}
		if err := s.CloseWrite(); err != nil {
			return 0, err
		}
		var got int64
		if err := binary.Read(s, binary.BigEndian, &got); err != nil || got != n {
			return 0, fmt.Errorf("sink read %d of %d bytes: %v", got, n, err)
		}
		return time.Since(start), nil
	}
	s, err := from.NewStream(ctx, p, sourceProto)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	if err := binary.Write(s, binary.BigEndian, n); err != nil {
		return 0, err
	}
	got, err := io.Copy(io.Discard, s)
	if err != nil || got != n {
		return 0, fmt.Errorf("read %d of %d bytes from the source: %v", got, n, err)
	}
	return time.Since(start), nil
}

// BenchmarkJumpointThroughput: one forward-like stream each way between a
// console and a peer, through a jumpoint and directly. Three real hosts on
// loopback TCP (TLS 1.3, yamux): the console's main host, connected to the
// jumpoint's host (tunnel.Serve); the console's tunnel host (the same
// arrangement as console/tunnelhost.go: its TCP dialer opens tunnels from
// the main host), whose connection to the peer's host runs inside the
// tunnel, end to end; and the console's main host connected directly to
// the peer's host, the anchor. Each op moves 64 MiB through the jumpoint,
// then the same directly: "jumpoint/direct" is the throughput ratio (issue
// #13's goal ≥ 0.5). Everything shares this process, so the CPU per GB
// (getrusage) of each path says what bounds it: "cpu-ratio" is direct ÷
// jumpoint CPU per byte, the ratio the cores allow when they are the
// bound.
func BenchmarkJumpointThroughput(b *testing.B) {
	jh := benchHost(b, mesh.HostConfig{ListenAddrs: loopbackTCP()})
	srv := tunnel.Serve(jh, tunnel.Config{Authorize: allowAll})
	b.Cleanup(srv.Close)
	ph := benchHost(b, mesh.HostConfig{ListenAddrs: loopbackTCP()})
	serveSinkAndSource(ph)
	main := benchHost(b, mesh.HostConfig{})
	ctx := context.Background()
	if err := main.Connect(ctx, peer.AddrInfo{ID: jh.ID(), Addrs: jh.Addrs()}); err != nil {
		b.Fatal(err)
	}
	if err := main.Connect(ctx, peer.AddrInfo{ID: ph.ID(), Addrs: ph.Addrs()}); err != nil {
		b.Fatal(err)
	}
	own := map[string]bool{}
	for _, a := range jh.Addrs() {
		if _, s, err := manet.DialArgs(a); err == nil {
			own[s] = true
		}
	}
	d := tunnel.NewDialer(func(address string) ([]peer.ID, *pb.TunnelOpen, bool) {
		return []peer.ID{jh.ID()}, &pb.TunnelOpen{}, !own[address]
	})
	d.SetHost(main)
	th := benchHost(b, mesh.HostConfig{TCPDialer: d.ForAddr})
	if err := th.Connect(ctx, peer.AddrInfo{ID: ph.ID(), Addrs: ph.Addrs()}); err != nil {
		b.Fatal(err)
	}
	if srv.Stats().Open != 1 {
		b.Fatalf("%d tunnels open, want the tunnel host's connection in one", srv.Stats().Open)
	}
	for _, dir := range []struct {
		name string
		up   bool
	}{{"console-to-peer", true}, {"peer-to-console", false}} {
		b.Run(dir.name, func(b *testing.B) {
			b.SetBytes(benchChunk)
			var jt, dt, jcpu, dcpu time.Duration
			for b.Loop() {
				c0 := processCPU(b)
				t, err := transfer(th, ph.ID(), benchChunk, dir.up)
				if err != nil {
					b.Fatal(err)
				}
				c1 := processCPU(b)
				// The same volume directly, right after: the ratio then
				// compares like with like as the machine's load drifts.
				u, err := transfer(main, ph.ID(), benchChunk, dir.up)
				if err != nil {
					b.Fatal(err)
				}
				jt, dt, jcpu, dcpu = jt+t, dt+u, jcpu+c1-c0, dcpu+processCPU(b)-c1
			}
			gb := float64(b.N) * benchChunk / 1e9
			b.ReportMetric(float64(b.N)*benchChunk/1e6/jt.Seconds(), "jumpoint-MB/s")
			b.ReportMetric(float64(b.N)*benchChunk/1e6/dt.Seconds(), "direct-MB/s")
			b.ReportMetric(dt.Seconds()/jt.Seconds(), "jumpoint/direct")
			b.ReportMetric(jcpu.Seconds()/gb, "jumpoint-cpu-s/GB")
			b.ReportMetric(dcpu.Seconds()/gb, "direct-cpu-s/GB")
			b.ReportMetric(dcpu.Seconds()/jcpu.Seconds(), "cpu-ratio")
		})
	}
}

// processCPU is this process's CPU time so far, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkJumpointMemory: what a jumpoint's tunnel server holds per peer
// behind it and per session. The server runs in a child process (this
// test binary again) on loopback TCP with libp2p's resource limits lifted;
// N peer hosts here (JM_BENCH_PEERS, default 1,000) each connect to it
// (TLS 1.3, yamux, identify) and open one tunnel to a TCP sink that stands
// for the coordinator, and send through it what a peer's connection does
// at its start (4 KiB each way: the handshakes) and then now and then (a
// 200-byte message each way). Then each opens a second tunnel, a session.
// The child's heap in use and goroutine stacks after GC, and its RSS, are
// read at each step:
//
//   - conn: the N connections alone (the part libp2p decides);
//   - peer: connection and coordinator tunnel, the cost of a peer behind
//     the jumpoint (issue #13's goal ≤ 20 KiB);
//   - tunnel: the coordinator tunnel alone (peer − conn);
//   - session: one more tunnel of a connected caller.
//
// "peer/goal" is the peer's heap and stacks ÷ 20 KiB.
func BenchmarkJumpointMemory(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("JM_BENCH_PEERS")); err == nil && v > 0 {
		n = v
	}
	target, stop := holdingSink(b)
	defer stop()
	child := startMemChild(b)
	ji := peer.AddrInfo{ID: child.ID, Addrs: child.addrs(b)}
	peers := make([]host.Host, n)
	for i := range peers {
		peers[i] = benchHost(b, mesh.HostConfig{})
	}
	for b.Loop() {
		base := child.sample(b)
		parallelDo(b, peers, func(h host.Host) error { return h.Connect(context.Background(), ji) })
		conns := child.sample(b)
		var tunnels []net.Conn
		var mu sync.Mutex
		open := func(h host.Host) error {
			c, err := tunnel.Dial(context.Background(), h, ji.ID, &pb.TunnelOpen{Target: target})
			if err != nil {
				return err
			}
			mu.Lock()
			tunnels = append(tunnels, c)
			mu.Unlock()
			return exchange(c)
		}
		parallelDo(b, peers, open)
		withTunnel := child.sample(b)
		parallelDo(b, peers, open)
		withSession := child.sample(b)
		per := func(after, before memSample) (heap, stack, rss float64) {
			return (float64(after.HeapInuse) - float64(before.HeapInuse)) / float64(n),
				(float64(after.StackInuse) - float64(before.StackInuse)) / float64(n),
				(float64(after.RSS) - float64(before.RSS)) / float64(n)
		}
		report := func(name string, after, before memSample) float64 {
			heap, stack, rss := per(after, before)
			b.ReportMetric(heap, name+"-heap-B")
			b.ReportMetric(stack, name+"-stack-B")
			b.ReportMetric(rss, name+"-rss-B")
			return heap + stack
		}
		report("conn", conns, base)
		peerCost := report("peer", withTunnel, base)
		report("tunnel", withTunnel, conns)
		report("session", withSession, withTunnel)
		b.ReportMetric(float64(withSession.Goroutines-withTunnel.Goroutines)/float64(n), "goroutines/session")
		b.ReportMetric(peerCost/(20<<10), "peer/goal")
		for _, c := range tunnels {
			c.Close()
		}
		parallelDo(b, peers, func(h host.Host) error { return h.Network().ClosePeer(ji.ID) })
	}
	b.ReportMetric(0, "ns/op")
}

// BenchmarkJumpointLinkMemory is BenchmarkJumpointMemory for peers on
// peer links (link.go): no libp2p connection to the jumpoint, one TCP
// connection each, proven by a signature. link-peer is what a peer behind
// the jumpoint costs it; peer/goal is against issue #13's 20 KiB.
func BenchmarkJumpointLinkMemory(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("JM_BENCH_PEERS")); err == nil && v > 0 {
		n = v
	}
	target, stop := holdingSink(b)
	defer stop()
	child := startMemChild(b)
	keys := make([]crypto.PrivKey, n)
	for i := range keys {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			b.Fatal(err)
		}
		keys[i] = k
	}
	for b.Loop() {
		base := child.sample(b)
		links := make([]net.Conn, n)
		work := make(chan int)
		errs := make(chan error, n)
		var wg sync.WaitGroup
		for range 16 {
			wg.Go(func() {
				for i := range work {
					c, err := tunnel.DialLink(context.Background(), child.Link, child.ID, keys[i], []uint32{4833}, &pb.TunnelOpen{Target: target})
					if err == nil {
						links[i] = c
						err = exchange(c)
					}
					if err != nil {
						errs <- err
					}
				}
			})
		}
		for i := range n {
			work <- i
		}
		close(work)
		wg.Wait()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		after := child.sample(b)
		heap := (float64(after.HeapInuse) - float64(base.HeapInuse)) / float64(n)
		stack := (float64(after.StackInuse) - float64(base.StackInuse)) / float64(n)
		b.ReportMetric(heap, "link-peer-heap-B")
		b.ReportMetric(stack, "link-peer-stack-B")
		b.ReportMetric((float64(after.RSS)-float64(base.RSS))/float64(n), "link-peer-rss-B")
		b.ReportMetric(float64(after.Goroutines-base.Goroutines)/float64(n), "goroutines/peer")
		b.ReportMetric((heap+stack)/(20<<10), "peer/goal")
		for _, c := range links {
			c.Close()
		}
	}
	b.ReportMetric(0, "ns/op")
}

// exchange is a peer connection's traffic at its start and then now and
// then: 4 KiB each way (the handshakes), then 200 bytes each way, so the
// splice is in the state it keeps between a peer's messages.
func exchange(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	defer c.SetDeadline(time.Time{})
	for _, size := range []int{4 << 10, 200} {
		if _, err := c.Write(make([]byte, size)); err != nil {
			return err
		}
		if _, err := io.ReadFull(c, make([]byte, size)); err != nil {
			return err
		}
	}
	return nil
}

// holdingSink stands for the coordinator: it echoes what each connection
// sends and holds it open until the caller closes it.
func holdingSink(b *testing.B) (string, func()) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { io.Copy(c, c); c.Close() })
		}
	})
	return l.Addr().String(), func() { l.Close() }
}

// parallelDo runs fn for every host, 16 at a time.
func parallelDo(b *testing.B, hosts []host.Host, fn func(host.Host) error) {
	work := make(chan host.Host)
	errs := make(chan error, len(hosts))
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for h := range work {
				if err := fn(h); err != nil {
					errs <- err
				}
			}
		})
	}
	for _, h := range hosts {
		work <- h
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// The child process: init runs the tunnel server when the environment says
// so, reports where it listens on stdout, serves memory samples over HTTP
// and exits when its stdin closes.

const memChildEnv = "JUMPMESH_TUNNEL_BENCH_CHILD"

type memSample struct {
	HeapInuse, StackInuse, RSS uint64
	Goroutines                 int
}

type memChildInfo struct {
	ID    peer.ID  `json:"id"`
	Addrs []string `json:"addrs"`
	HTTP  string   `json:"http"`
	Link  string   `json:"link"` // the peer-link port's host:port
}

func init() {
	if os.Getenv(memChildEnv) == "" {
		return
	}
	if err := runMemChild(); err != nil {
		fmt.Fprintln(os.Stderr, "tunnel bench child:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runMemChild() error {
	key, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return err
	}
	h, err := mesh.NewHost(mesh.HostConfig{Key: key, ListenAddrs: []ma.Multiaddr{ma.StringCast("/ip4/127.0.0.1/tcp/0")},
		ResourceManager: &network.NullResourceManager{}})
	if err != nil {
		return err
	}
	defer h.Close()
	srv := tunnel.Serve(h, tunnel.Config{Authorize: allowAll, MaxTunnels: 1 << 20, MaxLinkHandshakes: 1 << 20})
	defer srv.Close()
	links, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go srv.ServeLinks(links, allowAll)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// Two collections: the first may leave finalizer-held objects.
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_ = json.NewEncoder(w).Encode(memSample{HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, RSS: selfRSS(),
			Goroutines: runtime.NumGoroutine()})
	}))
	info := memChildInfo{ID: h.ID(), HTTP: ln.Addr().String(), Link: links.Addr().String()}
	for _, a := range h.Addrs() {
		info.Addrs = append(info.Addrs, a.String())
	}
	if err := json.NewEncoder(os.Stdout).Encode(info); err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it
	return nil
}

// selfRSS is this process's resident set (VmRSS), in bytes.
func selfRSS() uint64 {
	raw, _ := os.ReadFile("/proc/self/status")
	for line := range strings.SplitSeq(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

type memChild struct{ memChildInfo }

func startMemChild(b *testing.B) *memChild {
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), memChildEnv+"=1")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			b.Errorf("tunnel bench child: %v", err)
		}
	})
	c := &memChild{}
	if err := json.NewDecoder(stdout).Decode(&c.memChildInfo); err != nil {
		b.Fatalf("tunnel bench child did not start: %v", err)
	}
	return c
}

func (c *memChild) addrs(b *testing.B) []ma.Multiaddr {
	addrs, err := mesh.ParseMultiaddrs(c.Addrs)
	if err != nil {
		b.Fatal(err)
	}
	return addrs
}

func (c *memChild) sample(b *testing.B) memSample {
	resp, err := http.Get("http://" + c.HTTP)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var s memSample
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		b.Fatal(err)
	}
	return s
}
