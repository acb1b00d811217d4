package coordinator

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// metrics are the coordinator's own Prometheus series (libp2p adds its own).
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "jumpmesh", Subsystem: "coordinator", Name: "requests_total",
			Help: "Control requests served, by request and result code (\"ok\" on success).",
		}, []string{"request", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "jumpmesh", Subsystem: "coordinator", Name: "request_duration_seconds",
			Help:    "Time to serve a control request, store write included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}, []string{"request"}),
	}
	reg.MustRegister(m.requests, m.duration)
	return m
}

func (m *metrics) observe(request string, code catalog.Code, d time.Duration) {
	result := string(code)
	if code == "" {
		result = "ok"
	}
	m.requests.WithLabelValues(request, result).Inc()
	m.duration.WithLabelValues(request).Observe(d.Seconds())
}

// registerPeers adds the peer gauges, read from the service when scraped.
func (m *metrics) registerPeers(reg prometheus.Registerer, s *Service) {
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "jumpmesh", Subsystem: "coordinator", Name: "peers",
			Help: "Peers known to the site."}, func() float64 { total, _ := s.PeerCounts(); return float64(total) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "jumpmesh", Subsystem: "coordinator", Name: "peers_online",
			Help: "Peers connected to this coordinator now (on a site of several, the site's is the sum over them)."},
			func() float64 { return float64(s.PeersHeld()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "coordinator", Name: "peer_retries_total",
			Help: "Peer connections told to retry later by the global connection rate."}, func() float64 { return float64(s.PeerRetries()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "coordinator", Name: "session_events_refused_total",
			Help: "Session starts and ends peers reported on no grant issued for them (not audited)."},
			func() float64 { refused, _ := s.SessionEventsDropped(); return float64(refused) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "coordinator", Name: "session_events_limited_total",
			Help: "Session events over their peer's rate (not audited)."},
			func() float64 { _, limited := s.SessionEventsDropped(); return float64(limited) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "jumpmesh", Subsystem: "coordinator", Name: "peer_sends_pending",
			Help: "Online peers with something queued to send them: being written or waiting for a writer (push.go)."}, func() float64 { return float64(s.Pushing()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "coordinator", Name: "peer_slow_disconnects_total",
			Help: "Online peers disconnected because their send queue was full or a write timed out."},
			func() float64 { return float64(s.SlowPeers()) }),
	)
}
