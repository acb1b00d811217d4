package coordinator

import (
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// Consoles report how each session connected: direct, relayed, or relayed
// then upgraded to direct by hole punching, with the time that took. The
// counts live in memory (since start) and in /metrics; they are for
// watching a site's direct-connection rate, not an audit record.

const maxTimesKept = 1000

type pathStats struct {
	mu                        sync.Mutex
	direct, relayed, upgraded uint64
	jumpoint                  uint64
	times                     []int64 // most recent time-to-direct samples, ms

	sessions *prometheus.CounterVec
	toDirect prometheus.Histogram
}

func newPathStats() *pathStats {
	return &pathStats{
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "coordinator", Name: "session_paths_total",
			Help: "Sessions by how they connected: direct, relayed, upgraded (relayed, then direct after a hole punch), or jumpoint."}, []string{"path"}),
		toDirect: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: "jumpmesh", Subsystem: "coordinator", Name: "time_to_direct_seconds",
			Help: "Time from a relayed connection to the direct one, for upgraded sessions.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 12)}),
	}
}

func (p *pathStats) register(reg prometheus.Registerer) { reg.MustRegister(p.sessions, p.toDirect) }

func (p *pathStats) record(r *pb.PathReport) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case r.GetInitial() == "direct":
		p.direct++
		p.sessions.WithLabelValues("direct").Inc()
	case r.GetInitial() == "relayed" && r.GetFinal() == "direct":
		p.upgraded++
		p.sessions.WithLabelValues("upgraded").Inc()
		if ms := r.GetTimeToDirectMillis(); ms > 0 {
			p.times = append(p.times, ms)
			if len(p.times) > maxTimesKept {
				p.times = p.times[len(p.times)-maxTimesKept:]
			}
			p.toDirect.Observe((time.Duration(ms) * time.Millisecond).Seconds())
		}
	case r.GetInitial() == "relayed":
		p.relayed++
		p.sessions.WithLabelValues("relayed").Inc()
	case r.GetInitial() == "jumpoint":
		p.jumpoint++
		p.sessions.WithLabelValues("jumpoint").Inc()
	default:
		return catalog.Errorf(catalog.CodeInvalidArgument, "(path %q: direct, relayed or jumpoint)", r.GetInitial())
	}
	return nil
}

func (p *pathStats) snapshot() *pb.PathStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	times := append([]int64(nil), p.times...)
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	return &pb.PathStats{Direct: p.direct, Relayed: p.relayed, Upgraded: p.upgraded, Jumpoint: p.jumpoint, TimeToDirectMillis: times}
}

func (s *Service) pathReport(r *pb.PathReport) (*pb.Response, error) {
	if err := s.paths.record(r); err != nil {
		return nil, err
	}
	return ok(), nil
}

func (s *Service) pathStatsResponse(c *caller) (*pb.Response, error) {
	if err := c.requireAdmin(); err != nil {
		return nil, err
	}
	return &pb.Response{Body: &pb.Response_PathStats{PathStats: s.paths.snapshot()}}, nil
}
