package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/relay"
)

// BenchmarkRelayedThroughput measures one stream's throughput on loopback,
// direct and through a relay (in a child process, as it runs in production)
// with each buffer size, over TCP with TLS, and once over QUIC. The relayed
// path also carries the end-to-end TLS and yamux inside the circuit.
// "relayed/direct" is the share of direct throughput a relayed session gets
// (target ≥ 0.5); Resources.BufferSize is chosen from these numbers.
//
// The CPU each path costs explains the ratio: relay-cpu-s/GB is the relay
// process's, ends-cpu-s/GB this process's (sender and receiver; both layers
// of TLS and yamux) per GB relayed, and direct-cpu-s/GB this process's per
// GB sent directly. cpu-ratio is what relayed/direct would be if both paths
// were bound by the same cores (direct CPU per byte ÷ relayed CPU per
// byte, ends and relay); ends-cpu-ratio is the same without the relay's
// share, as if the relay had cores of its own. relay-syscalls/MiB counts
// the relay's read and write system calls (/proc/<pid>/io) per MiB relayed.
func BenchmarkRelayedThroughput(b *testing.B) {
	site := coordinatortest.New(b, console.Login)
	src, dest := member(b, site, "direct-src"), member(b, site, "direct-dest", "/ip4/127.0.0.1/tcp/0")
	if err := src.Connect(site.Ctx(), peer.AddrInfo{ID: dest.ID(), Addrs: dest.Addrs()}); err != nil {
		b.Fatal(err)
	}
	b.Run("direct", func(b *testing.B) { throughput(b, src, dest.ID()) })
	for _, c := range []struct {
		transport string
		kib       int
	}{{"tcp", 2}, {"tcp", 16}, {"tcp", 32}, {"tcp", 64}, {"tcp", 256}, {"quic", 32}} {
		name := fmt.Sprintf("%s-%dk", c.transport, c.kib)
		// Members first: the relay's first ACL then has them.
		rsrc, rdest := member(b, site, "src-"+name), member(b, site, "dest-"+name)
		cfg := relayConfig(b, site, "relay-"+name)
		cfg.Refresh = time.Hour
		cfg.Resources.BufferSize = c.kib << 10
		child := startBenchChild(b, cfg)
		ri := relayInfoOver(b, child.addrs(b), c.transport)
		if err := reserve(site.Ctx(), rdest, ri); err != nil {
			b.Fatal(err)
		}
		if err := dialCircuit(site.Ctx(), rsrc, ri, rdest.ID()); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("relayed/%s/buffer=%dKiB", c.transport, c.kib), func(b *testing.B) {
			relay0, ends0, sys0 := child.cpu(b), selfCPU(b), child.syscalls(b)
			relayed := throughput(b, rsrc, rdest.ID())
			relay1, ends1, sys1 := child.cpu(b), selfCPU(b), child.syscalls(b)
			// The same volume directly, right after: the ratio then
			// compares like with like even as the machine's load drifts.
			direct := timedTransfer(b, src, dest.ID(), int64(b.N)*benchChunk)
			direct1 := selfCPU(b)
			gb := float64(b.N) * benchChunk / 1e9
			relayCPU, endsCPU, directCPU := (relay1-relay0).Seconds()/gb, (ends1-ends0).Seconds()/gb, (direct1-ends1).Seconds()/gb
			b.ReportMetric(relayed/direct, "relayed/direct")
			b.ReportMetric(relayCPU, "relay-cpu-s/GB")
			b.ReportMetric(endsCPU, "ends-cpu-s/GB")
			b.ReportMetric(directCPU, "direct-cpu-s/GB")
			b.ReportMetric(directCPU/(endsCPU+relayCPU), "cpu-ratio")
			b.ReportMetric(directCPU/endsCPU, "ends-cpu-ratio")
			b.ReportMetric(float64(sys1-sys0)/(float64(b.N)*benchChunk/(1<<20)), "relay-syscalls/MiB")
			b.Logf("relayed/direct %.2f at load average %s", relayed/direct, loadAverage())
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

// benchChunk is what one benchmark op sends: enough that even one op
// (-benchtime 1x) lasts long enough for CPU times read in 10 ms ticks.
const benchChunk = 64 << 20

func timedTransfer(b *testing.B, src host.Host, dest peer.ID, n int64) float64 {
	start := time.Now()
	if _, err := sendToSink(context.Background(), src, dest, n); err != nil {
		b.Fatal(err)
	}
	return float64(n) / 1e6 / time.Since(start).Seconds()
}

// relayInfoOver picks the relay's address on transport ("tcp" or "quic")
// out of addrs (each ending in /p2p/<relay>).
func relayInfoOver(b *testing.B, addrs []ma.Multiaddr, transport string) peer.AddrInfo {
	if transport == "tcp" {
		return relayInfo(b, addrs)
	}
	i := slices.IndexFunc(addrs, func(a ma.Multiaddr) bool {
		_, err := a.ValueForProtocol(ma.P_QUIC_V1)
		return err == nil
	})
	if i < 0 {
		b.Fatalf("relay has no %s address: %v", transport, addrs)
	}
	info, err := peer.AddrInfoFromP2pAddr(addrs[i])
	if err != nil {
		b.Fatal(err)
	}
	return *info
}

// BenchmarkRelayMemoryPerCircuit opens 200 idle circuits (20 sources × 10
// destinations, all already connected to the relay) through a relay that
// runs in a child process, and reports what they add to its heap, its
// goroutine stacks and its goroutine count, per circuit. Each iteration
// opens and closes the 200 circuits.
func BenchmarkRelayMemoryPerCircuit(b *testing.B) {
	const nsrc, ndest = 20, 10
	site := coordinatortest.New(b, console.Login)
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

// Knobs for profiling a relay child by hand (see docs/performance.md): a directory
// where each child writes a CPU profile named after its relay, the
// child's GOMAXPROCS (the parent's is left alone), whether its splices
// copy through user space (read and write with a 32 KiB buffer) instead of
// splice(2), whether they copy with io.Copy (splice(2) in two goroutines
// per splice) instead of the splice loops, how long the loops let frames
// gather (a duration; 0 never) and how many loops there are, to compare.
const (
	benchProfileEnv  = "JUMPMESH_RELAY_BENCH_CPUPROFILE"
	benchProcsEnv    = "JUMPMESH_RELAY_BENCH_PROCS"
	benchUserCopyEnv = "JUMPMESH_RELAY_BENCH_USERCOPY"
	benchGoCopyEnv   = "JUMPMESH_RELAY_BENCH_GOCOPY"
	benchGatherEnv   = "JUMPMESH_RELAY_BENCH_GATHER"
	benchLoopsEnv    = "JUMPMESH_RELAY_BENCH_LOOPS"
)

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
	if os.Getenv(benchUserCopyEnv) != "" {
		relay.SetSpliceTap(func([]byte) {})
	}
	if os.Getenv(benchGoCopyEnv) != "" {
		relay.SetSpliceGoCopy(true)
	}
	if d, err := time.ParseDuration(os.Getenv(benchGatherEnv)); err == nil {
		relay.SetSpliceGather(d, 2000)
	}
	if n, err := strconv.Atoi(os.Getenv(benchLoopsEnv)); err == nil && n > 0 {
		relay.SetSpliceLoops(n)
	}
	if procs, err := strconv.Atoi(os.Getenv(benchProcsEnv)); err == nil && procs > 0 {
		runtime.GOMAXPROCS(procs)
	}
	if dir := os.Getenv(benchProfileEnv); dir != "" {
		f, err := os.Create(filepath.Join(dir, filepath.Base(cfg.DataDir)+".cpu.pprof"))
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(2)
		}
		defer func() {
			pprof.StopCPUProfile()
			f.Close()
		}()
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
	return true
}

type benchChild struct {
	info childInfo
	pid  int
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
	c := &benchChild{pid: cmd.Process.Pid}
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

// userHZ is the unit of the CPU times in /proc/<pid>/stat (USER_HZ, 100
// on every Linux architecture Go supports).
const userHZ = 100

// cpu is the CPU time the child has used so far, user and system, from
// /proc/<pid>/stat (10 ms resolution).
func (c *benchChild) cpu(b *testing.B) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.pid))
	if err != nil {
		b.Fatalf("relay child's CPU time: %v", err)
	}
	// The command name (field 2) may hold spaces; fields count from the
	// last ')'. utime and stime are fields 14 and 15.
	i := bytes.LastIndexByte(raw, ')')
	fields := strings.Fields(string(raw[i+1:]))
	if i < 0 || len(fields) < 13 {
		b.Fatalf("relay child's /proc stat: %q", raw)
	}
	var ticks int64
	for _, f := range fields[11:13] {
		n, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			b.Fatalf("relay child's /proc stat: %v", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ
}

// syscalls is the number of read and write system calls the child has made
// so far (syscr + syscw in /proc/<pid>/io): reads and writes on its
// sockets, nearly all of them.
func (c *benchChild) syscalls(b *testing.B) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", c.pid))
	if err != nil {
		b.Fatalf("relay child's system calls: %v", err)
	}
	var n int64
	for line := range strings.Lines(string(raw)) {
		name, v, _ := strings.Cut(strings.TrimSpace(line), ": ")
		if name == "syscr" || name == "syscw" {
			k, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatalf("relay child's /proc io: %q", line)
			}
			n += k
		}
	}
	return n
}

// switches is how many times the child's threads have been switched out
// so far, voluntarily (to sleep: each is a wake-up later) or not, summed
// over its threads from /proc/<pid>/task/*/status (threads that ended are
// not counted).
func (c *benchChild) switches(b *testing.B) int64 {
	dirs, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", c.pid))
	if err != nil {
		b.Fatalf("relay child's threads: %v", err)
	}
	var n int64
	for _, d := range dirs {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/status", c.pid, d.Name()))
		if err != nil {
			continue // a thread that ended
		}
		for line := range strings.Lines(string(raw)) {
			name, v, _ := strings.Cut(line, ":")
			if name == "voluntary_ctxt_switches" || name == "nonvoluntary_ctxt_switches" {
				k, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err == nil {
					n += k
				}
			}
		}
	}
	return n
}

// selfCPU is this process's CPU time so far, user and system.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
