package relay_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/relay"
)

// BenchmarkRelayedThroughput measures one stream's throughput on loopback,
// direct and through a relay with each buffer size, all over TCP with TLS
// (the relayed path also carries the end-to-end TLS inside the circuit).
// "relayed/direct" is the share of direct throughput a relayed session gets
// (target ≥ 0.5); Resources.BufferSize is chosen from these numbers.
func BenchmarkRelayedThroughput(b *testing.B) {
	site := coordinatortest.New(b)
	src, dest := member(b, site, "direct-src"), member(b, site, "direct-dest", "/ip4/127.0.0.1/tcp/0")
	if err := src.Connect(site.Ctx(), peer.AddrInfo{ID: dest.ID(), Addrs: dest.Addrs()}); err != nil {
		b.Fatal(err)
	}
	b.Run("direct", func(b *testing.B) { throughput(b, src, dest.ID()) })
	for _, kib := range []int{2, 16, 32, 64, 256} {
		// Members first: the relay's first ACL then has them.
		rsrc, rdest := member(b, site, fmt.Sprintf("src-%dk", kib)), member(b, site, fmt.Sprintf("dest-%dk", kib))
		cfg := relayConfig(b, site, fmt.Sprintf("relay-%dk", kib))
		cfg.Listen = []string{"/ip4/127.0.0.1/tcp/0"}
		cfg.Resources.BufferSize = kib << 10
		ri := relayInfo(b, runRelay(b, cfg).Addrs())
		if err := reserve(site.Ctx(), rdest, ri); err != nil {
			b.Fatal(err)
		}
		if err := dialCircuit(site.Ctx(), rsrc, ri, rdest.ID()); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("relayed/buffer=%dKiB", kib), func(b *testing.B) {
			relayed := throughput(b, rsrc, rdest.ID())
			// The same volume directly, right after: the ratio then
			// compares like with like even as the machine's load drifts.
			direct := timedTransfer(b, src, dest.ID(), int64(b.N)*benchChunk)
			b.ReportMetric(relayed/direct, "relayed/direct")
		})
	}
}

// throughput sends b.N chunks to dest's sink, the wait for its count
// included, and returns MB/s.
func throughput(b *testing.B, src host.Host, dest peer.ID) float64 {
	b.SetBytes(benchChunk)
	b.ResetTimer()
	if _, err := sendToSink(context.Background(), src, dest, int64(b.N)*benchChunk); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	return float64(b.N) * benchChunk / 1e6 / b.Elapsed().Seconds()
}

// benchChunk is what one benchmark op sends.
const benchChunk = 256 << 10

func timedTransfer(b *testing.B, src host.Host, dest peer.ID, n int64) float64 {
	start := time.Now()
	if _, err := sendToSink(context.Background(), src, dest, n); err != nil {
		b.Fatal(err)
	}
	return float64(n) / 1e6 / time.Since(start).Seconds()
}

// BenchmarkRelayMemoryPerCircuit opens 200 idle circuits (20 sources × 10
// destinations, all already connected to the relay) through a relay that
// runs in a child process, and reports what they add to its heap, its
// goroutine stacks and its goroutine count, per circuit. Each iteration
// opens and closes the 200 circuits.
func BenchmarkRelayMemoryPerCircuit(b *testing.B) {
	const nsrc, ndest = 20, 10
	site := coordinatortest.New(b)
	var srcs, dests []host.Host
	for i := range ndest {
		dests = append(dests, member(b, site, fmt.Sprintf("dest-%d", i)))
	}
	for i := range nsrc {
		srcs = append(srcs, member(b, site, fmt.Sprintf("src-%d", i)))
	}
	child := startBenchChild(b, relayConfig(b, site, "relay-mem"))
	ri := relayInfo(b, child.addrs(b))
	ctx := site.Ctx()
	for _, d := range dests {
		if err := reserve(ctx, d, ri); err != nil {
			b.Fatal(err)
		}
	}
	for _, s := range srcs {
		if err := s.Connect(ctx, ri); err != nil {
			b.Fatal(err)
		}
	}
	var heap, stack, goroutines float64
	n := 0
	for b.Loop() {
		before := child.sample(b)
		forEachPair(b, srcs, dests, func(s, d host.Host) error { return dialCircuit(ctx, s, ri, d.ID()) })
		waitCircuits(b, child, nsrc*ndest)
		after := child.sample(b)
		heap += float64(after.HeapInuse) - float64(before.HeapInuse)
		stack += float64(after.StackInuse) - float64(before.StackInuse)
		goroutines += float64(after.Goroutines - before.Goroutines)
		n += nsrc * ndest
		forEachPair(b, srcs, dests, func(s, d host.Host) error { return s.Network().ClosePeer(d.ID()) })
		waitCircuits(b, child, 0)
	}
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(heap/float64(n), "heap-B/circuit")
	b.ReportMetric(stack/float64(n), "stack-B/circuit")
	b.ReportMetric(goroutines/float64(n), "goroutines/circuit")
}

// forEachPair runs fn for every (source, destination), one goroutine per source.
func forEachPair(b *testing.B, srcs, dests []host.Host, fn func(s, d host.Host) error) {
	var wg sync.WaitGroup
	errs := make(chan error, len(srcs)*len(dests))
	for _, s := range srcs {
		wg.Go(func() {
			for _, d := range dests {
				if err := fn(s, d); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

func waitCircuits(b *testing.B, c *benchChild, want int) {
	coordinatortest.Eventually(b, 10*time.Second, fmt.Sprintf("%d circuits", want), func() bool {
		return metric(b, c.info.HTTP, "jumpmesh_relay_circuits") == float64(want)
	})
}

// The child process: TestMain calls runBenchChild, which runs a relay when
// the environment says so and reports where it listens on stdout.

const benchChildEnv = "JUMPMESH_RELAY_BENCH_CHILD"

type childInfo struct {
	Addrs []string `json:"addrs"`
	HTTP  string   `json:"http"`
	Heap  string   `json:"heap"`
}

type memSample struct {
	HeapInuse, StackInuse uint64
	Goroutines            int
}

func runBenchChild() bool {
	raw := os.Getenv(benchChildEnv)
	if raw == "" {
		return false
	}
	var cfg relay.Config
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	r, err := relay.New(ctx, cfg)
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench child:", err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.Exit(1)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// Two collections: the first may leave finalizer-held objects.
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		_ = json.NewEncoder(w).Encode(memSample{HeapInuse: ms.HeapInuse, StackInuse: ms.StackInuse, Goroutines: runtime.NumGoroutine()})
	}))
	info := childInfo{HTTP: r.HTTPAddr(), Heap: ln.Addr().String()}
	for _, a := range r.Addrs() {
		info.Addrs = append(info.Addrs, a.String())
	}
	_ = json.NewEncoder(os.Stdout).Encode(info)
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent closes it
	r.Close()
	os.Exit(0)
	return true
}

type benchChild struct {
	info childInfo
}

// startBenchChild runs cfg's relay in a child process until the benchmark ends.
func startBenchChild(b *testing.B, cfg relay.Config) *benchChild {
	raw, err := json.Marshal(cfg)
	if err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$", "-test.bench=^$")
	cmd.Env = append(os.Environ(), benchChildEnv+"="+string(raw))
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
			b.Errorf("relay child: %v", err)
		}
	})
	c := &benchChild{}
	line, err := bufio.NewReader(stdout).ReadBytes('\n')
	if err != nil {
		b.Fatalf("relay child did not start: %v", err)
	}
	if err := json.Unmarshal(line, &c.info); err != nil {
		b.Fatalf("relay child said %q: %v", line, err)
	}
	return c
}

func (c *benchChild) addrs(b *testing.B) []ma.Multiaddr {
	addrs, err := mesh.ParseMultiaddrs(c.info.Addrs)
	if err != nil {
		b.Fatal(err)
	}
	return addrs
}

func (c *benchChild) sample(b *testing.B) memSample {
	resp, err := http.Get("http://" + c.info.Heap)
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
