package relay

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	relayv2 "github.com/libp2p/go-libp2p/p2p/protocol/circuitv2/relay"
	"github.com/prometheus/client_golang/prometheus"
)

// tracer feeds go-libp2p's relay metrics (libp2p_relaysvc_*: reservations
// and connections opened and closed, request statuses, bytes relayed) and
// keeps our own gauges beside them. go-libp2p only has counters, and its
// series are process-wide; ours are per relay and answer "how many now"
// without a PromQL subtraction. Methods not overridden here go to
// go-libp2p's tracer through the embedding.
type tracer struct {
	relayv2.MetricsTracer
	reservations prometheus.Gauge
	circuits     prometheus.Gauge
	bytes        prometheus.Counter
}

func newTracer(reg prometheus.Registerer) *tracer {
	t := &tracer{
		MetricsTracer: relayv2.NewMetricsTracer(relayv2.WithRegisterer(reg)),
		reservations: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "reservations",
			Help: "Reservations held by members now."}),
		circuits: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "circuits",
			Help: "Relayed connections open now."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "relayed_bytes_total",
			Help: "Bytes relayed, both directions of every circuit."}),
	}
	reg.MustRegister(t.reservations, t.circuits, t.bytes)
	return t
}

func (t *tracer) ConnectionOpened() {
	t.circuits.Inc()
	t.MetricsTracer.ConnectionOpened()
}

func (t *tracer) ConnectionClosed(d time.Duration) {
	t.circuits.Dec()
	t.MetricsTracer.ConnectionClosed(d)
}

func (t *tracer) ReservationAllowed(isRenewal bool) {
	if !isRenewal {
		t.reservations.Inc()
	}
	t.MetricsTracer.ReservationAllowed(isRenewal)
}

func (t *tracer) ReservationClosed(cnt int) {
	t.reservations.Sub(float64(cnt))
	t.MetricsTracer.ReservationClosed(cnt)
}

func (t *tracer) BytesTransferred(cnt int) {
	t.bytes.Add(float64(cnt))
	t.MetricsTracer.BytesTransferred(cnt)
}

// registerACLMetrics adds the ACL's freshness, read when scraped.
func (r *Relay) registerACLMetrics(reg prometheus.Registerer) {
	r.refreshFailures = prometheus.NewCounter(prometheus.CounterOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "acl_refresh_failures_total",
		Help: "ACL fetches from the coordinator that failed (the last ACL stays in force)."})
	reg.MustRegister(r.refreshFailures,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "acl_members",
			Help: "Peer IDs in the ACL now."}, func() float64 { return float64(r.acl.Len()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "jumpmesh", Subsystem: "relay", Name: "acl_age_seconds",
			Help: "Seconds since the ACL was last fetched."}, func() float64 { return r.aclAge().Seconds() }),
	)
}

// Health is what /healthz answers.
type Health struct {
	Status  string   `json:"status"`
	Relay   string   `json:"relay"`
	Addrs   []string `json:"addrs"`
	Members int      `json:"acl_members"`
	ACLAge  float64  `json:"acl_age_seconds"`
	Error   string   `json:"error,omitempty"`
}

// serveHealth is unhealthy once the ACL is older than three refresh
// periods: the coordinator stops handing out a relay that has not
// refreshed for that long, and removed members may still be let in.
func (r *Relay) serveHealth(w http.ResponseWriter, _ *http.Request) {
	h := Health{Status: "ok", Relay: r.ID().String(), Addrs: []string{}, Members: r.acl.Len(), ACLAge: r.aclAge().Seconds()}
	for _, a := range r.Addrs() {
		h.Addrs = append(h.Addrs, a.String())
	}
	w.Header().Set("Content-Type", "application/json")
	if age, limit := r.aclAge(), 3*r.refreshEvery(); age > limit {
		h.Status, h.Error = "unhealthy", fmt.Sprintf("ACL not refreshed for %s (coordinator unreachable?)", age.Round(time.Second))
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(h)
}
