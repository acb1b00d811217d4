package jumpoint

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// registerMetrics adds the jumpoint's series: refusals by reason, the
// tunnel server's counters and the ACL's size and freshness, read when
// scraped.
func (j *Jumpoint) registerMetrics(reg prometheus.Registerer) {
	const ns, sub = "jumpmesh", "jumpoint"
	j.refused = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "refusals_total",
		Help: "Tunnels refused, by reason (bad_target, no_acl, stranger, peer_target, key_*, grant_*)."}, []string{"reason"})
	// Every reason shows from the start, at 0, so alerts can use rate().
	for _, r := range Reasons {
		j.refused.WithLabelValues(r)
	}
	j.refreshFailures = prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "acl_refresh_failures_total",
		Help: "ACL fetches from the coordinator that failed (the last ACL stays in force)."})
	reg.MustRegister(j.refused, j.refreshFailures,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "tunnels",
			Help: "Tunnels open now."}, func() float64 { return float64(j.tunnels.Stats().Open) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "tunnels_total",
			Help: "Tunnels opened since the jumpoint started."}, func() float64 { return float64(j.tunnels.Stats().Total) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Namespace: ns, Subsystem: sub, Name: "tunneled_bytes_total",
			Help: "Bytes carried, both directions of every tunnel."}, func() float64 { return float64(j.tunnels.Stats().Bytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "peers_connected",
			Help: "Peers behind the jumpoint (in its ACL) connected now."}, func() float64 { return float64(j.peersConnected()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "acl_peers",
			Help: "Peers in the ACL now."}, func() float64 { return float64(j.aclPeers()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub, Name: "acl_age_seconds",
			Help: "Seconds since the ACL was last fetched."}, func() float64 { return j.aclAge().Seconds() }),
	)
}

// Health is what /healthz answers.
type Health struct {
	Status   string   `json:"status"`
	Jumpoint string   `json:"jumpoint"`
	Name     string   `json:"name"`
	Addrs    []string `json:"addrs"`
	Peers    int      `json:"acl_peers"`
	Online   int      `json:"peers_connected"`
	Tunnels  uint32   `json:"tunnels"`
	ACLAge   float64  `json:"acl_age_seconds"`
	Error    string   `json:"error,omitempty"`
}

// serveHealth is unhealthy once the ACL is older than three refresh
// periods: the coordinator then shows the jumpoint offline, and removed
// members may still be let in.
func (j *Jumpoint) serveHealth(w http.ResponseWriter, _ *http.Request) {
	st := j.Stats()
	h := Health{Status: "ok", Jumpoint: j.ID().String(), Name: j.Name(), Addrs: []string{}, Peers: j.aclPeers(),
		Online: int(st.GetPeersConnected()), Tunnels: st.GetTunnelsOpen(), ACLAge: j.aclAge().Seconds()}
	for _, a := range j.Addrs() {
		h.Addrs = append(h.Addrs, a.String())
	}
	w.Header().Set("Content-Type", "application/json")
	if age, limit := j.aclAge(), 3*j.refreshEvery(); age > limit {
		h.Status, h.Error = "unhealthy", fmt.Sprintf("ACL not refreshed for %s (coordinator unreachable?)", age.Round(time.Second))
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(h)
}
