package main

import (
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Many forwards at once through one peer (issue 17): 50 connections of a
// single `jumpmesh forward`, each paced at 10 MiB/s to a sink behind the
// peer, and beside them a small request (64 bytes echoed) every 20 ms
// through the same forward process. The latency of the small request is
// measured idle first, as the anchor of the same run.

// sessionsSeconds is how long the loaded phase runs (SESSIONS_SECONDS,
// default 10).
func sessionsSeconds() time.Duration {
	if s, err := strconv.Atoi(os.Getenv("SESSIONS_SECONDS")); err == nil && s > 0 {
		return time.Duration(s) * time.Second
	}
	return 10 * time.Second
}

// echoServer answers every connection with what it reads.
func echoServer(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// pacedSender writes to addr at rate bytes per second until stop closes,
// counting what it wrote. A sender the forward cannot keep up with writes
// as fast as it can; once stop closes its connection is closed, which ends
// a blocked write.
func pacedSender(b *testing.B, addr string, rate int64, stop <-chan struct{}, sent *atomic.Int64) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Error(err)
		return
	}
	closed := make(chan struct{})
	defer func() { <-closed }()
	go func() { <-stop; c.Close(); close(closed) }()
	const chunk = 32 << 10
	buf := make([]byte, chunk)
	tick := time.NewTicker(time.Duration(int64(time.Second) * chunk / rate))
	defer tick.Stop()
	start := time.Now()
	var n int64
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		// Catch up after a late tick, up to the rate since the start.
		if n < rate*int64(time.Since(start))/int64(time.Second) {
			if _, err := c.Write(buf); err != nil {
				select {
				case <-stop:
				default:
					b.Error(err)
				}
				return
			}
			n += chunk
			sent.Add(chunk)
		}
	}
}

// smallRequests sends 64 bytes to addr and reads them back every 20 ms
// until stop closes (or n requests when n > 0), returning each round trip.
// It may run on its own goroutine: it reports errors with b.Error.
func smallRequests(b *testing.B, addr string, n int, stop <-chan struct{}) []time.Duration {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Error(err)
		return nil
	}
	defer c.Close()
	msg, back := make([]byte, 64), make([]byte, 64)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var rtts []time.Duration
	for n <= 0 || len(rtts) < n {
		select {
		case <-stop:
			return rtts
		case <-tick.C:
		}
		t0 := time.Now()
		_ = c.SetDeadline(t0.Add(30 * time.Second))
		if _, err := c.Write(msg); err != nil {
			b.Error(err)
			return rtts
		}
		if _, err := io.ReadFull(c, back); err != nil {
			b.Error(err)
			return rtts
		}
		rtts = append(rtts, time.Since(t0))
	}
	return rtts
}

func percentile(d []time.Duration, p float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[min(len(s)-1, int(p*float64(len(s))))]
}

// BenchmarkForwardManySessions: 50 forwards of 10 MiB/s through one peer;
// the aggregate rate, the slowest connection's, and the p50/p99 of a small
// request's round trip idle and while they run.
func BenchmarkForwardManySessions(b *testing.B) {
	const sessions, rate = 50, 10 << 20
	s := newJumpSiteTB(b)
	env := append(os.Environ(), "JUMPMESH_HOME="+s.admin)
	target, stop := sink(b)
	defer stop()
	_, tport, _ := net.SplitHostPort(target)
	_, eport, _ := net.SplitHostPort(echoServer(b))
	bulkPort, echoPort := freeTCPPort(b), freeTCPPort(b)
	fw := startForwarder(b, env, "forwarding", binary, "forward", "web-01", bulkPort+":127.0.0.1:"+tport, echoPort+":127.0.0.1:"+eport)
	peer := s.peerPID(b)
	idle := smallRequests(b, "127.0.0.1:"+echoPort, 100, nil)
	b.Logf("load average before: %s", loadAverage())
	var agg, slowest float64
	var loaded []time.Duration
	var conCPU, peerCPU time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		done := make(chan struct{})
		counts := make([]atomic.Int64, sessions)
		var wg sync.WaitGroup
		c0, p0 := procCPU(b, fw.Process.Pid), procCPU(b, peer)
		start := time.Now()
		for k := range sessions {
			wg.Go(func() { pacedSender(b, "127.0.0.1:"+bulkPort, rate, done, &counts[k]) })
		}
		var rtts []time.Duration
		lat := make(chan struct{})
		go func() { rtts = smallRequests(b, "127.0.0.1:"+echoPort, 0, done); close(lat) }()
		time.Sleep(sessionsSeconds()) // the load phase: pacing, not waiting for an event
		close(done)
		wg.Wait()
		<-lat
		el := time.Since(start).Seconds()
		conCPU += procCPU(b, fw.Process.Pid) - c0
		peerCPU += procCPU(b, peer) - p0
		var total int64
		low := int64(-1)
		for k := range counts {
			n := counts[k].Load()
			total += n
			if low < 0 || n < low {
				low = n
			}
		}
		agg += float64(total) / el
		slowest += float64(low) / el
		loaded = append(loaded, rtts...)
	}
	b.StopTimer()
	b.Logf("load average after: %s", loadAverage())
	mib := float64(b.N) * (1 << 20)
	b.ReportMetric(agg/mib, "aggregate-MiB/s(target=500)")
	b.ReportMetric(slowest/mib, "slowest-MiB/s(target=10)")
	b.ReportMetric(float64(percentile(idle, 0.5).Microseconds())/1000, "idle-p50-ms")
	b.ReportMetric(float64(percentile(idle, 0.99).Microseconds())/1000, "idle-p99-ms")
	b.ReportMetric(float64(percentile(loaded, 0.5).Microseconds())/1000, "loaded-p50-ms")
	b.ReportMetric(float64(percentile(loaded, 0.99).Microseconds())/1000, "loaded-p99-ms")
	gib := agg * float64(b.N) * sessionsSeconds().Seconds() / (1 << 30)
	b.ReportMetric(conCPU.Seconds()/gib, "console-CPU-s/GiB")
	b.ReportMetric(peerCPU.Seconds()/gib, "peer-CPU-s/GiB")
}
