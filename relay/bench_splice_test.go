package relay_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
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

// BenchmarkRelayedForwardThroughput measures a forward's throughput
// (console.Forward and the peer's forward service, 64 MiB per path per
// op, console → target) on three paths, interleaved in each op so that
// the machine's drifting load falls on all three alike:
//   - direct: a direct session, the forward on a bulk connection of its
//     own (the anchor);
//   - splice: a relayed session, the forward on a bulk connection through
//     the relay's TCP splice (relay/splice.go);
//   - channel: the same relayed session with the forward on its channel
//     inside the circuit (ForwardOpen.bulk off: the path before splices).
//
// The relay runs in a child process, as in production. splice/direct and
// channel/direct are the wall-clock ratios (target ≥ 0.5);
// relay-cpu-s/GiB is the relay process's CPU per GiB forwarded on each
// relayed path (10 ms ticks: run 8 ops or more for the splice's),
// ends-cpu-s/GiB this process's (console, peer and target) per GiB on each
// path, and cpu-ratio what the wall ratio would be if every process were
// bound by the same shared cores: direct CPU per byte ÷ the relayed path's
// (ends and relay). The load average is logged.
func BenchmarkRelayedForwardThroughput(b *testing.B) {
	site := coordinatortest.New(b, console.Login)
	dcon, dpeer := member(b, site, "fwd-direct-console"), member(b, site, "fwd-direct-peer", "/ip4/127.0.0.1/tcp/0")
	rcon, rpeer := member(b, site, "fwd-relayed-console"), member(b, site, "fwd-relayed-peer")
	target := sinkTarget(b)
	ctx := site.Ctx()
	for _, p := range []host.Host{dpeer, rpeer} {
		serveForwards(b, ctx, p)
	}
	if err := dcon.Connect(ctx, peer.AddrInfo{ID: dpeer.ID(), Addrs: dpeer.Addrs()}); err != nil {
		b.Fatal(err)
	}
	cfg := relayConfig(b, site, "relay-fwd")
	cfg.Refresh = time.Hour
	child := startBenchChild(b, cfg)
	ri := relayInfo(b, child.addrs(b))
	if err := reserve(ctx, rpeer, ri); err != nil {
		b.Fatal(err)
	}
	if err := dialCircuit(ctx, rcon, ri, rpeer.ID()); err != nil {
		b.Fatal(err)
	}
	splices0 := metric(b, child.info.HTTP, "jumpmesh_relay_splices_total")

	const n = benchChunk
	var wall, ends, relayCPU [3]time.Duration
	b.SetBytes(n)
	b.ResetTimer()
	for range b.N {
		for i, path := range []struct {
			con  host.Host
			to   peer.ID
			bulk bool
		}{{dcon, dpeer.ID(), true}, {rcon, rpeer.ID(), true}, {rcon, rpeer.ID(), false}} {
			r0, e0, t0 := child.cpu(b), selfCPU(b), time.Now()
			forwardToSink(b, ctx, path.con, path.to, target, path.bulk, n)
			wall[i] += time.Since(t0)
			ends[i] += selfCPU(b) - e0
			relayCPU[i] += child.cpu(b) - r0
		}
	}
	b.StopTimer()
	if got := metric(b, child.info.HTTP, "jumpmesh_relay_splices_total") - splices0; got != float64(b.N) {
		b.Fatalf("the relay spliced %v forwards, want %d: the splice path did not run", got, b.N)
	}
	gib := float64(b.N) * n / (1 << 30)
	rate := func(i int) float64 { return float64(b.N) * n / 1e6 / wall[i].Seconds() }
	b.ReportMetric(rate(0), "direct-MB/s")
	b.ReportMetric(rate(1), "splice-MB/s")
	b.ReportMetric(rate(2), "channel-MB/s")
	b.ReportMetric(rate(1)/rate(0), "splice/direct")
	b.ReportMetric(rate(2)/rate(0), "channel/direct")
	b.ReportMetric(relayCPU[1].Seconds()/gib, "splice-relay-cpu-s/GiB")
	b.ReportMetric(relayCPU[2].Seconds()/gib, "channel-relay-cpu-s/GiB")
	b.ReportMetric(ends[0].Seconds()/gib, "direct-ends-cpu-s/GiB")
	b.ReportMetric(ends[1].Seconds()/gib, "splice-ends-cpu-s/GiB")
	b.ReportMetric(ends[2].Seconds()/gib, "channel-ends-cpu-s/GiB")
	cpuRatio := func(i int) float64 { return ends[0].Seconds() / (ends[i] + relayCPU[i]).Seconds() }
	b.ReportMetric(cpuRatio(1), "splice-cpu-ratio")
	b.ReportMetric(cpuRatio(2), "channel-cpu-ratio")
	b.Logf("splice/direct %.2f (by CPU %.2f), channel/direct %.2f (by CPU %.2f) at load average %s",
		rate(1)/rate(0), cpuRatio(1), rate(2)/rate(0), cpuRatio(2), loadAverage())
}

// serveForwards makes h serve forward channels as a peer does, asking its
// relay for splice slots.
func serveForwards(b testing.TB, ctx context.Context, h host.Host) {
	h.SetStreamHandler(channel.Protocol, func(st network.Stream) {
		ch, open, err := channel.Accept(st)
		if err != nil {
			return
		}
		defer ch.Close()
		if err := ch.Ready("bench", nil); err != nil {
			return
		}
		if f := open.GetForward(); f != nil {
			_ = peerpkg.ServeForwardWithRelays(ctx, ch, f, 5*time.Second, h)
		}
	})
}

// sinkTarget is a TCP target that reads each connection to its end, then
// answers the byte count (8 bytes, big-endian) and closes.
func sinkTarget(b testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.Copy(io.Discard, c)
				_ = binary.Write(c, binary.BigEndian, n)
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// forwardToSink forwards one connection from con to the sink target on
// the peer to and sends n bytes through it.
func forwardToSink(b testing.TB, ctx context.Context, con host.Host, to peer.ID, target int, bulk bool, n int64) {
	open := &pb.ChannelOpen{Kind: &pb.ChannelOpen_Forward{Forward: &pb.ForwardOpen{Host: "127.0.0.1", Port: uint32(target), Bulk: bulk}}}
	ch, _, err := channel.Open(ctx, con, to, open)
	if err != nil {
		b.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	carried, err := ln.Accept()
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, _, err := console.Forward(ctx, ch, carried); done <- err }()
	chunk := make([]byte, 256<<10)
	for left := n; left > 0; left -= int64(len(chunk)) {
		if _, err := client.Write(chunk[:min(left, int64(len(chunk)))]); err != nil {
			b.Fatalf("writing to the forward: %v", err)
		}
	}
	_ = client.(*net.TCPConn).CloseWrite()
	var got int64
	if err := binary.Read(client, binary.BigEndian, &got); err != nil || got != n {
		var fwdErr error
		select {
		case fwdErr = <-done:
		case <-time.After(5 * time.Second):
			fwdErr = errors.New("still running")
		}
		b.Fatalf("the sink got %d bytes of %d: %v (the forward: %v)", got, n, err, fwdErr)
	}
	if err := <-done; err != nil {
		b.Fatalf("forward: %v", fmt.Errorf("bulk %v: %w", bulk, err))
	}
}
