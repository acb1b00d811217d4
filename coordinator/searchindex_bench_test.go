package coordinator

import (
	"crypto/rand"
	"path/filepath"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// searchServiceBench builds a service whose registry holds n synthetic
// peers (searchBenchRecords, last seen 0–59 days ago: half are lost),
// put straight into the cache (the store keeps only the groups: the
// search is measured, not the load), and reports how long filing them
// took per peer.
func searchServiceBench(b testing.TB, n int) *Service {
	st, err := OpenStore(filepath.Join(b.TempDir(), "db"), StoreOptions{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	key, _, _ := crypto.GenerateEd25519Key(rand.Reader)
	signer, _ := mesh.NewKeySigner(key)
	svc, err := NewService(ServiceConfig{Store: st, Signer: signer, Clock: mesh.NewManualClock(searchBenchNow)})
	if err != nil {
		b.Fatal(err)
	}
	if err := st.Update(func(tx *Tx) error {
		return tx.PutGroup(&pb.Group{Code: "ops", Members: []*pb.GroupMember{{User: "tina", Role: pb.MemberRole_MEMBER_ROLE_MEMBER}}})
	}); err != nil {
		b.Fatal(err)
	}
	recs := searchBenchRecords(n)
	for i, p := range recs {
		p.LastSeenUnix = searchBenchNow.Add(-time.Duration(i%60) * 24 * time.Hour).Unix()
	}
	start := time.Now()
	for _, p := range recs {
		svc.peers.registry.put(p)
	}
	b.Logf("filing %d peers in the registry and its index: %.1f µs each", n, float64(time.Since(start).Microseconds())/float64(n))
	return svc
}

// searchBenchQueries are the sim's search workload's queries (over
// searchBenchRecords' names) and a few more.
var searchBenchQueries = []string{"name:web-05000", "ip:10.0.1.", "tag:linux status:offline", "group:jumpgroup:ops -status:lost",
	"last-access:<7d", "", "web-0004", `"row c"`, "nat:easy"}

// BenchmarkSearchPeers100k is `jumpmesh ls QUERY` in the coordinator at
// 100,000 peers, with the default limit: visibility, status, matching,
// the first 1,000 in order, their views and the encoded reply, for an
// administrator and for tina, a technician who sees jumpgroup:ops (a
// sixth). index is the search index, scan the map scan it replaced over
// cached docs (its steady state), in the same run; scan/index-p99 is the
// ratio. cpu-ms is the process's CPU per search, the garbage collector's
// included (the wall-clock figures on a shared machine include waiting
// for a CPU).
func BenchmarkSearchPeers100k(b *testing.B) {
	svc := searchServiceBench(b, searchBenchPeers)
	tina := &caller{user: &pb.User{Name: "tina", Role: pb.Role_ROLE_TECHNICIAN}}
	for _, who := range []*caller{rootCaller, tina} {
		for _, qs := range searchBenchQueries {
			name := qs
			if qs == "" {
				name = "everything"
			}
			b.Run(who.name()+"/"+name, func(b *testing.B) {
				var p99 [2]float64
				for way, find := range []func(searchRequest) ([]*pb.PeerView, int){svc.peers.find, svc.peers.scanCached} {
					took := make([]time.Duration, 0, b.N)
					var total int
					cpu := cpuTime()
					for range b.N {
						start := time.Now()
						views, n, err := svc.benchList(who, qs, find)
						if err != nil {
							b.Fatal(err)
						}
						if _, err := proto.Marshal(&pb.Response{Body: &pb.Response_Peers{Peers: &pb.PeerList{Peers: views, Total: uint32(n)}}}); err != nil {
							b.Fatal(err)
						}
						took = append(took, time.Since(start))
						total = n
					}
					label := [2]string{"index", "scan"}[way]
					b.ReportMetric(float64(cpuTime()-cpu)/float64(time.Millisecond)/float64(b.N), label+"-cpu-ms")
					slices.Sort(took)
					ms := func(p float64) float64 {
						return float64(took[int(p*float64(len(took)-1))]) / float64(time.Millisecond)
					}
					b.ReportMetric(ms(0.50), label+"-p50-ms")
					b.ReportMetric(ms(0.99), label+"-p99-ms")
					p99[way] = ms(0.99)
					if way == 0 {
						b.ReportMetric(float64(total), "matches")
					}
				}
				b.ReportMetric(p99[1]/p99[0], "scan/index-p99")
			})
		}
	}
}

// benchList is peerList with find in place of the registry's.
func (s *Service) benchList(c *caller, query string, find func(searchRequest) ([]*pb.PeerView, int)) ([]*pb.PeerView, int, error) {
	now := s.clock.Now()
	q, err := ParseQuery(query, now)
	if err != nil {
		return nil, 0, err
	}
	vis, err := s.visibilityOf(c)
	if err != nil {
		return nil, 0, err
	}
	var allow func(string) bool
	if vis != nil {
		allow = vis.allows
	}
	views, total := find(searchRequest{query: q, allow: allow, settings: s.settings(), now: now, limit: DefaultPeerListLimit, shared: true})
	return fitPeers(views, DefaultPeerListLimit), total, nil
}

// BenchmarkSearchIndexLoad is filing 100,000 peers in an empty registry
// and its index (registry.fill), what a coordinator does at start after
// reading the store: wall and CPU time (the process's, GC included), and the heap the
// registry holds per peer (records, docs, index).
func BenchmarkSearchIndexLoad(b *testing.B) {
	recs := searchBenchRecords(searchBenchPeers)
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		cpu := cpuTime()
		start := time.Now()
		r := newRegistry()
		r.mu.Lock()
		r.fill(recs)
		r.mu.Unlock()
		b.ReportMetric(float64(time.Since(start).Milliseconds()), "ms/100k")
		b.ReportMetric(float64((cpuTime() - cpu).Milliseconds()), "cpu-ms/100k")
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(len(recs)), "B/peer")
		runtime.KeepAlive(r)
	}
	b.ReportMetric(0, "ns/op")
}

// cpuTime is the CPU the process has used, user and system.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
