package netlab_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/sim/netlab"
	"github.com/jumpmesh/jumpmesh/sim/netlab/labtest"
	"github.com/jumpmesh/jumpmesh/sim/probe"
)

// rtts pings server from h n times, one at a time, and returns the sorted
// round-trip times.
func rtts(t *testing.T, h *netlab.Host, server netip.AddrPort, n int) []time.Duration {
	t.Helper()
	pc, err := h.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	// The first probe also resolves ARP through the wire: not a sample.
	if _, err := probe.UDP(ctxFor(t, waitLong), pc, server); err != nil {
		t.Fatal(err)
	}
	out := make([]time.Duration, 0, n)
	for range n {
		start := time.Now()
		if _, err := probe.UDP(ctxFor(t, waitLong), pc, server); err != nil {
			t.Fatal(err)
		}
		out = append(out, time.Since(start))
	}
	slices.Sort(out)
	return out
}

func pct(sorted []time.Duration, p float64) time.Duration {
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

func round(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }

// TestLatency checks the user-space wire: no round trip is faster than
// twice the configured one-way latency (less the jitter), and jitter
// spreads the round trips. How far they exceed it depends on how busy the
// machine is: that is BenchmarkLatency's figure, not an assertion here.
// Run with -v to see the distributions (docs/lab.md quotes them).
func TestLatency(t *testing.T) {
	lab := labtest.New(t, netlab.Topology{
		Networks: []netlab.NetworkSpec{
			{Name: "pub", NAT: netlab.Public},
			{Name: "far", NAT: netlab.Easy, Uplink: netlab.Link{Latency: 10 * time.Millisecond}},
		},
		Hosts: []netlab.HostSpec{
			{Name: "srv", Network: "pub"},
			{Name: "near", Network: "pub"},
			{Name: "l20", Network: "pub", Link: netlab.Link{Latency: 20 * time.Millisecond}},
			{Name: "j20", Network: "pub", Link: netlab.Link{Latency: 20 * time.Millisecond, Jitter: 10 * time.Millisecond}},
			{Name: "home", Network: "far", Link: netlab.Link{Latency: 5 * time.Millisecond}},
		},
	})
	srv := lab.Host("srv")
	serveProbes(t, srv, probePort)
	server := netip.AddrPortFrom(srv.Addr(), probePort)
	const samples = 50

	for _, tc := range []struct {
		host   string
		oneWay time.Duration // sum of the latencies on the path
		jitter time.Duration
	}{
		{"near", 0, 0},
		{"l20", 20 * time.Millisecond, 0},
		{"j20", 20 * time.Millisecond, 10 * time.Millisecond},
		{"home", 15 * time.Millisecond, 0},
	} {
		t.Run(tc.host, func(t *testing.T) {
			t.Parallel()
			r := rtts(t, lab.Host(tc.host), server, samples)
			want := 2 * tc.oneWay
			t.Logf("one-way %v ±%v: RTT min %v p10 %v p50 %v p90 %v p99 %v max %v (ideal %v)",
				tc.oneWay, tc.jitter, round(r[0]), round(pct(r, .1)), round(pct(r, .5)),
				round(pct(r, .9)), round(pct(r, .99)), round(r[len(r)-1]), want)
			// A wire never delivers early, however idle or busy the machine.
			if low := want - 2*tc.jitter; r[0] < low {
				t.Errorf("fastest round trip %v, want at least %v", r[0], low)
			}
			// Load only widens the spread, so this cannot fail for being busy.
			if tc.jitter > 0 {
				if spread := pct(r, .9) - pct(r, .1); spread < tc.jitter/2 {
					t.Errorf("p90-p10 spread %v with jitter ±%v: jitter not applied", spread, tc.jitter)
				}
			}
		})
	}
}

// TestLoss sends datagrams over a cable with 20% loss each way and checks
// that the loss rule's count accounts for every datagram the sink did not
// get, and that the rate is near 20%.
func TestLoss(t *testing.T) {
	const lossPct, bursts, perBurst = 20, 20, 100
	lab := labtest.New(t, netlab.Topology{
		Networks: []netlab.NetworkSpec{{Name: "pub", NAT: netlab.Public}},
		Hosts: []netlab.HostSpec{
			{Name: "sink", Network: "pub"},
			{Name: "lossy", Network: "pub", Link: netlab.Link{Loss: lossPct}},
		},
	})
	sink, lossy := lab.Host("sink"), lab.Host("lossy")
	spc, err := sink.ListenPacket("udp4", ":9000")
	if err != nil {
		t.Fatal(err)
	}
	var got atomic.Uint64
	go func() {
		buf := make([]byte, 64)
		for {
			if _, _, err := spc.ReadFrom(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	pc, err := lossy.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(sink.Addr(), 9000))
	before, err := lossy.LinkStats()
	if err != nil {
		t.Fatal(err)
	}
	sent := uint64(0)
	// Bursts small enough for the sink's socket buffer: every datagram is
	// either received or counted lost before the next burst.
	for range bursts {
		for range perBurst {
			if _, err := pc.WriteTo([]byte("x"), dst); err != nil {
				t.Fatal(err)
			}
			sent++
		}
		eventually(t, waitLong, "every datagram received or counted lost", func() (bool, error) {
			s, err := lossy.LinkStats()
			return got.Load()+s.LostOut-before.LostOut == sent, err
		})
	}
	s, _ := lossy.LinkStats()
	lost := s.LostOut - before.LostOut
	rate := float64(lost) / float64(sent) * 100
	t.Logf("configured %d%% loss: %d of %d lost (%.1f%%)", lossPct, lost, sent, rate)
	// 2000 trials at p=0.2: σ = 0.9 points; ±5 points is 5.6σ.
	if rate < lossPct-5 || rate > lossPct+5 {
		t.Errorf("measured loss %.1f%%, want %d%% ± 5", rate, lossPct)
	}
}

// TestRate pushes a TCP transfer through TBF-limited cables (a veth and a
// TAP wire) and checks the throughput is near the configured rate.
func TestRate(t *testing.T) {
	const rate = 16_000_000 // bit/s
	const size = 1 << 20    // ≈ 0.5 s at the rate
	lab := labtest.New(t, netlab.Topology{
		Networks: []netlab.NetworkSpec{{Name: "pub", NAT: netlab.Public}},
		Hosts: []netlab.HostSpec{
			{Name: "sink", Network: "pub"},
			{Name: "veth", Network: "pub", Link: netlab.Link{Rate: rate}},
			{Name: "wire", Network: "pub", Link: netlab.Link{Rate: rate, Latency: 2 * time.Millisecond}},
		},
	})
	sink := lab.Host("sink")
	ln, err := sink.Listen("tcp4", ":9001")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				n, _ := io.Copy(io.Discard, c)
				_, _ = c.Write([]byte{byte(n >> 20)}) // done: tell the sender
				c.Close()
			}()
		}
	}()
	for _, name := range []string{"veth", "wire"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := lab.Host(name).Dial(ctx, nil, "tcp4", netip.AddrPortFrom(sink.Addr(), 9001).String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(20 * time.Second))
			start := time.Now()
			if _, err := c.Write(make([]byte, size)); err != nil {
				t.Fatal(err)
			}
			c.(*net.TCPConn).CloseWrite()
			if _, err := c.Read(make([]byte, 1)); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			got := float64(size*8) / took.Seconds()
			t.Logf("configured %d bit/s: %d bytes in %v = %.0f bit/s (%.0f%%)", rate, size, took.Round(time.Millisecond), got, got/rate*100)
			// Shaping caps the rate however idle the machine; a busy one
			// may fall well short of it, so only a dead link fails low.
			if got > 1.15*rate || got < 0.1*rate {
				t.Errorf("throughput %.0f bit/s, want at most about %d", got, rate)
			}
		})
	}
}

// TestPartition cuts a host's cable and heals it.
func TestPartition(t *testing.T) {
	lab := labtest.New(t, netlab.Topology{
		Networks: []netlab.NetworkSpec{{Name: "pub", NAT: netlab.Public}, {Name: "home", NAT: netlab.Easy}},
		Hosts:    []netlab.HostSpec{{Name: "srv", Network: "pub"}, {Name: "pc", Network: "home"}},
	})
	srv, pc := lab.Host("srv"), lab.Host("pc")
	serveProbes(t, srv, probePort)
	server := netip.AddrPortFrom(srv.Addr(), probePort)
	conn, err := pc.ListenPacket("udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := probe.UDP(ctxFor(t, waitLong), conn, server); err != nil {
		t.Fatal(err)
	}
	for _, cut := range []struct {
		name            string
		partition, heal func() error
		stats           func() (netlab.LinkStats, error)
	}{
		{"host", pc.Partition, pc.Heal, pc.LinkStats},
		{"uplink", pc.Network().Partition, pc.Network().Heal, pc.Network().UplinkStats},
	} {
		if err := cut.partition(); err != nil {
			t.Fatal(err)
		}
		if err := cut.partition(); err != nil { // idempotent
			t.Fatal(err)
		}
		before, err := cut.stats()
		if err != nil {
			t.Fatal(err)
		}
		// The drop counter proves the datagram died on the cut cable.
		if _, err := conn.WriteTo([]byte("JMPROBE1 cut"), net.UDPAddrFromAddrPort(server)); err != nil {
			t.Fatal(err)
		}
		eventually(t, waitLong, cut.name+" partition drops", func() (bool, error) {
			s, err := cut.stats()
			return s.PartitionedOut > before.PartitionedOut, err
		})
		if err := cut.heal(); err != nil {
			t.Fatal(err)
		}
		if _, err := probe.UDP(ctxFor(t, waitLong), conn, server); err != nil {
			t.Errorf("%s healed: %v", cut.name, err)
		}
	}
}

// BenchmarkLatency measures how far round trips over a delayed cable exceed
// the configured delay (twice the one-way latency), with the excess of a
// round trip over an undelayed cable (about 20µs) included. Each iteration
// is one round trip; run with -benchtime=500x.
func BenchmarkLatency(b *testing.B) {
	// Up to 50ms: a longer round trip would outlast probe.RetryInterval.
	for _, lat := range []time.Duration{time.Millisecond, 5 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond} {
		b.Run(lat.String(), func(b *testing.B) {
			lab := labtest.New(b, netlab.Topology{
				Networks: []netlab.NetworkSpec{{Name: "pub", NAT: netlab.Public}},
				Hosts: []netlab.HostSpec{
					{Name: "srv", Network: "pub"},
					{Name: "far", Network: "pub", Link: netlab.Link{Latency: lat}},
				},
			})
			srv := lab.Host("srv")
			pc, err := srv.ListenPacket("udp4", ":3478")
			if err != nil {
				b.Fatal(err)
			}
			go probe.ServeUDP(pc)
			cl, err := lab.Host("far").ListenPacket("udp4", ":0")
			if err != nil {
				b.Fatal(err)
			}
			server := netip.AddrPortFrom(srv.Addr(), 3478)
			ctx := context.Background()                           // the probes' own loss retries are not needed here
			if _, err := probe.UDP(ctx, cl, server); err != nil { // ARP
				b.Fatal(err)
			}
			excess := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if _, err := probe.UDP(ctx, cl, server); err != nil {
					b.Fatal(err)
				}
				excess = append(excess, time.Since(start)-2*lat)
			}
			b.StopTimer()
			slices.Sort(excess)
			us := func(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
			b.ReportMetric(us(excess[0]), "min-excess-µs")
			b.ReportMetric(us(pct(excess, .5)), "p50-excess-µs")
			b.ReportMetric(us(pct(excess, .9)), "p90-excess-µs")
			b.ReportMetric(us(pct(excess, .99)), "p99-excess-µs")
			b.ReportMetric(us(excess[len(excess)-1]), "max-excess-µs")
		})
	}
}
