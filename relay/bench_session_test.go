package relay_test

import (
	"context"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
	"github.com/jumpmesh/jumpmesh/mesh/channel"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	peerpkg "github.com/jumpmesh/jumpmesh/peer"
)

// BenchmarkRelayedExecThroughput measures a relayed command's output
// (`head -c N /dev/zero` on the peer, N = 100 MiB or
// JUMPMESH_BENCH_EXEC_MIB, read by console.Exec) on two paths, interleaved
// in each op:
//   - splice: the exec channel moves to a bulk connection through the
//     relay's TCP splice once the peer offers one (session protocol 1.2.0,
//     mesh/channel/bulkswitch.go); the first bytes go on the circuit until
//     the switch (splice-share says how much went through the splice);
//   - circuit: the same relayed session with the offer declined (the
//     console has no splice dialer): the channel inside the circuit, as
//     before issue 17's switch.
//
// The relay runs in a child process, as in production. relay-cpu-s/GiB is
// the relay process's CPU per GiB of output on each path (10 ms ticks),
// ends-cpu-s/GiB this process's (console and peer), circuit/splice the
// wall-clock ratio (> 1: the splice is faster) and relay-cpu-ratio the
// circuit's relay CPU over the splice's. The load average is logged.
func BenchmarkRelayedExecThroughput(b *testing.B) {
	mib := int64(100)
	if v, err := strconv.ParseInt(os.Getenv("JUMPMESH_BENCH_EXEC_MIB"), 10, 64); err == nil && v > 0 {
		mib = v
	}
	n := mib << 20
	site := coordinatortest.New(b, console.Login)
	rcon, rpeer := member(b, site, "exec-relayed-console"), member(b, site, "exec-relayed-peer")
	ctx := site.Ctx()
	serveExecs(ctx, rpeer)
	cfg := relayConfig(b, site, "relay-exec")
	cfg.Refresh = time.Hour
	child := startBenchChild(b, cfg)
	ri := relayInfo(b, child.addrs(b))
	if err := reserve(ctx, rpeer, ri); err != nil {
		b.Fatal(err)
	}
	if err := dialCircuit(ctx, rcon, ri, rpeer.ID()); err != nil {
		b.Fatal(err)
	}
	spliced0 := metric(b, child.info.HTTP, "jumpmesh_relay_spliced_bytes_total")

	var wall, ends, relayCPU [2]time.Duration
	b.SetBytes(n)
	b.ResetTimer()
	for range b.N {
		for i, viaSplice := range []bool{true, false} {
			r0, e0, t0 := child.cpu(b), selfCPU(b), time.Now()
			execToConsole(b, ctx, rcon, rpeer.ID(), viaSplice, n)
			wall[i] += time.Since(t0)
			ends[i] += selfCPU(b) - e0
			relayCPU[i] += child.cpu(b) - r0
		}
	}
	b.StopTimer()
	spliced := metric(b, child.info.HTTP, "jumpmesh_relay_spliced_bytes_total") - spliced0
	gib := float64(b.N) * float64(n) / (1 << 30)
	rate := func(i int) float64 { return float64(b.N) * float64(n) / 1e6 / wall[i].Seconds() }
	b.ReportMetric(rate(0), "splice-MB/s")
	b.ReportMetric(rate(1), "circuit-MB/s")
	b.ReportMetric(rate(0)/rate(1), "splice/circuit")
	b.ReportMetric(spliced/(float64(b.N)*float64(n)), "splice-share")
	b.ReportMetric(relayCPU[0].Seconds()/gib, "splice-relay-cpu-s/GiB")
	b.ReportMetric(relayCPU[1].Seconds()/gib, "circuit-relay-cpu-s/GiB")
	b.ReportMetric(ends[0].Seconds()/gib, "splice-ends-cpu-s/GiB")
	b.ReportMetric(ends[1].Seconds()/gib, "circuit-ends-cpu-s/GiB")
	b.ReportMetric(relayCPU[1].Seconds()/relayCPU[0].Seconds(), "relay-cpu-ratio")
	b.Logf("%d MiB: splice %.0f MB/s, circuit %.0f MB/s (splice/circuit %.2f); relay CPU %.2f vs %.2f s/GiB (ratio %.2f); spliced %.2f of the output; load average %s",
		mib, rate(0), rate(1), rate(0)/rate(1), relayCPU[0].Seconds()/gib, relayCPU[1].Seconds()/gib,
		relayCPU[1].Seconds()/relayCPU[0].Seconds(), spliced/(float64(b.N)*float64(n)), loadAverage())
}

// serveExecs makes h serve exec channels as a peer does, on every session
// protocol, offering relayed ones the switch to the relay's splice.
func serveExecs(ctx context.Context, h host.Host) {
	serve := func(st network.Stream) {
		ch, open, err := channel.Accept(st)
		if err != nil {
			return
		}
		defer ch.Close()
		if err := ch.Ready("bench", nil); err != nil {
			return
		}
		if open.GetExec() != nil {
			peerpkg.ServeExecWithRelays(ctx, ch, open, h)
		}
	}
	h.SetStreamHandler(channel.Protocol, serve)
	h.SetStreamHandler(channel.ProtocolBulkSwitch, serve)
}

// countWriter counts what is written to it.
type countWriter struct{ n atomic.Int64 }

func (w *countWriter) Write(p []byte) (int, error) {
	w.n.Add(int64(len(p)))
	return len(p), nil
}

// execToConsole runs `head -c n /dev/zero` on the peer to and reads its
// output; viaSplice lets the channel move to the relay's splice.
func execToConsole(b testing.TB, ctx context.Context, con host.Host, to peer.ID, viaSplice bool, n int64) {
	open := &pb.ChannelOpen{Kind: &pb.ChannelOpen_Exec{Exec: &pb.ExecOpen{Argv: []string{"head", "-c", strconv.FormatInt(n, 10), "/dev/zero"}}}}
	ch, _, err := channel.Open(ctx, con, to, open)
	if err != nil {
		b.Fatal(err)
	}
	defer ch.Close()
	if viaSplice {
		console.AllowBulkSwitch(ch)
	}
	var out countWriter
	st, err := console.Exec(ctx, ch, console.ExecIO{Stdout: &out})
	if err != nil || st.GetCode() != 0 || out.n.Load() != n {
		b.Fatalf("exec: %v, %v, %d bytes of %d", st, err, out.n.Load(), n)
	}
	if viaSplice != ch.BulkSwitched() {
		b.Fatalf("the channel switched: %v, want %v", ch.BulkSwitched(), viaSplice)
	}
}
