package scale

import (
	"math"
	"runtime"
	"slices"
	"time"
)

// Latency is a distribution's percentiles in milliseconds (nearest rank).
type Latency struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// latencyOf summarises d, which it sorts.
func latencyOf(d []time.Duration) Latency {
	slices.Sort(d)
	n := len(d)
	if n == 0 {
		return Latency{}
	}
	at := func(p float64) float64 {
		i := max(0, int(math.Ceil(p*float64(n)))-1)
		return ms(d[i])
	}
	return Latency{Count: n, P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(d[n-1])}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Memory is what each peer costs this process, after a GC. With the fleet
// in this process, Online* count both ends of each connection and the
// coordinator's state for the peer (Ends "both"); with the fleet in
// processes of its own, the coordinator's alone (Ends "coordinator"), as
// the peer/ benchmarks' BenchmarkOnlinePeerMemory.
type Memory struct {
	// Ends says whose memory Online* are: "both" (coordinator and fleet in
	// this process) or "coordinator".
	Ends string `json:"ends"`
	// OnlineHeap is heap in use (spans) with every peer online, less the
	// same with the fleet's hosts built but not connected, per peer.
	OnlineHeap float64 `json:"online_heap_bytes_per_peer"`
	// OnlineLive is the same for live heap objects.
	OnlineLive float64 `json:"online_live_bytes_per_peer"`
	// OnlineStack is the same for goroutine stacks.
	OnlineStack float64 `json:"online_stack_bytes_per_peer"`
	// Goroutines per online peer, both ends.
	Goroutines float64 `json:"goroutines_per_peer"`
	// IdleHost is what a fleet host costs before it connects (heap in use
	// and stacks), per peer: the load generator's own weight (in the fleet
	// processes, when it runs there).
	IdleHost float64 `json:"idle_host_bytes_per_peer"`
}

// memSample is the process's memory after a GC.
type memSample struct {
	heap, live, stack int64
	goroutines        int
}

func sampleMem() memSample {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return memSample{heap: int64(m.HeapInuse), live: int64(m.HeapAlloc), stack: int64(m.StackInuse), goroutines: runtime.NumGoroutine()}
}

// memoryPerPeer compares the samples with no fleet (none), the fleet's
// hosts built (idle) and every peer online (online).
func memoryPerPeer(none, idle, online memSample, n int) Memory {
	per := func(v int64) float64 { return float64(v) / float64(n) }
	return Memory{
		OnlineHeap:  per(online.heap - idle.heap),
		OnlineLive:  per(online.live - idle.live),
		OnlineStack: per(online.stack - idle.stack),
		Goroutines:  per(int64(online.goroutines - idle.goroutines)),
		IdleHost:    per(idle.heap + idle.stack - none.heap - none.stack),
	}
}
