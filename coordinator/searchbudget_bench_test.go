package coordinator

import (
	"slices"
	"testing"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/control"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// BenchmarkSearchBudget100k splits the worst `ls` of the search workload
// (tag:linux status:offline at 100,000 peers: 24,788 matches, the first
// 1,000 sent) into its parts, each timed alone in the same run, as wall
// time per search (p50 of b.N): matching (plan, candidates, the checks),
// ordering (the first 1,000 of the matches), the reply's views (encoded,
// with their statuses), the control stream's encoding of the reply, and
// the console's decoding of it. What the wire adds (TLS records, yamux)
// is `jumpmesh sim scale --workload search`'s console time less these.
func BenchmarkSearchBudget100k(b *testing.B) {
	svc := searchServiceBench(b, searchBenchPeers)
	for _, qs := range []string{"tag:linux status:offline", ""} {
		name := qs
		if name == "" {
			name = "everything"
		}
		b.Run(name, func(b *testing.B) {
			req, err := svc.searchRequest(rootCaller, qs, false, DefaultPeerListLimit)
			if err != nil {
				b.Fatal(err)
			}
			x, r := svc.peers.index, svc.peers.registry
			parts := map[string][]time.Duration{}
			timed := func(part string, f func()) {
				start := time.Now()
				f()
				parts[part] = append(parts[part], time.Since(start))
			}
			var matches []slotMatch
			var first []uint32
			var raw, wire []byte
			for range b.N {
				r.mu.RLock()
				timed("match", func() { matches = x.match(req) })
				timed("order", func() { first = x.order(matches, req.limit) })
				timed("views", func() {
					raw = raw[:0]
					for _, i := range first {
						s := &x.slots[i]
						raw = appendListedView(raw, s.e.encoded(), s.status(req.settings, req.now))
					}
				})
				r.mu.RUnlock()
				resp := &pb.Response{Body: &pb.Response_Peers{Peers: encodedPeerList(raw, len(matches))}}
				timed("encode", func() { wire, err = control.EncodeDelimited(resp) })
				if err != nil {
					b.Fatal(err)
				}
				timed("decode", func() { _, err = control.DecodeResponse(wire) })
				if err != nil {
					b.Fatal(err)
				}
			}
			var sum float64
			for _, part := range []string{"match", "order", "views", "encode", "decode"} {
				p50 := percentile(parts[part], 0.5)
				sum += p50
				b.ReportMetric(p50, part+"-ms")
			}
			b.ReportMetric(sum, "sum-ms")
			b.ReportMetric(float64(len(matches)), "matches")
			b.ReportMetric(float64(len(wire))/1000, "reply-KB")
			got, err := control.DecodeResponse(wire)
			if err != nil || len(got.GetPeers().GetPeers()) != DefaultPeerListLimit {
				b.Fatalf("the reply holds %d views: %v", len(got.GetPeers().GetPeers()), err)
			}
		})
	}
}

// percentile is the p-th of d in milliseconds; it sorts d.
func percentile(d []time.Duration, p float64) float64 {
	slices.Sort(d)
	return float64(d[int(p*float64(len(d)-1))]) / float64(time.Millisecond)
}
