package coordinator

import "github.com/prometheus/client_golang/prometheus"

// stormMetrics are the series an operator watches a reconnect storm by:
// the handshake gate and its waiting room (handshakes.go, waitingroom.go),
// the members' lane (lane.go), and why peers' attempts ended unanswered or
// were refused by the resource manager (peerends.go). Read from the gate
// and the service when scraped: one lock of the gate a scrape.
type stormMetrics struct {
	gate    *handshakeGate
	service *Service
}

func stormDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(prometheus.BuildFQName("jumpmesh", "coordinator", name), help, labels, nil)
}

var (
	descPlaces       = stormDesc("handshake_places", "TLS or Noise handshakes of peers and consoles the coordinator runs at once now (the bound it follows on its CPU).")
	descRunning      = stormDesc("handshakes_running", "Handshakes holding a place now.")
	descWaited       = stormDesc("handshakes_waited_total", "Handshakes that found every place taken and waited for one.")
	descUnidentified = stormDesc("handshakes_unidentified_total", "Handshakes that held a place and ended without the remote's identity (failed, stalled, given up by the dialer).")
	descRate         = stormDesc("handshakes_per_second", "Handshakes the gate serves per second, as it measures them (0 before it has measured).")
	descRoom         = stormDesc("waiting_room_connections", "Accepted TCP connections waiting for their handshake's place, or in their first second without choosing a security protocol.")
	descRoomCap      = stormDesc("waiting_room_capacity", "Connections the waiting room holds now (what the gate serves in 8 s, within the resource manager's bound); past it they wait in the kernel's accept queue.")
	descRoomFull     = stormDesc("waiting_room_full_total", "Times the accept loop found the waiting room full (the connections behind waited in the kernel's accept queue: raise net.core.somaxconn if this grows with many peers).")
	descPending      = stormDesc("connections_unidentified", "The main port's inbound TCP connections accepted and not yet identified: what they hold of the resource manager's bound on such connections (Resources.MaxHandshakes); the accept loop waits while they fill it.")
	descRoomTimedOut = stormDesc("waiting_room_timeouts_total", "Connections that gave up waiting for a place (libp2p's 15 s to finish a connection's set-up).")
	descLaneRefused  = stormDesc("lane_refused_total", "Connections to the members' lane closed after their handshake: a key that is not a user's.")
	descUnanswered   = stormDesc("peer_attempts_unanswered_total", "Peer streams the coordinator ended before any answer, by reason.", "reason")
	descRefusals     = stormDesc("resource_refusals_total", "Connections and streams the resource manager refused, by the scope whose limit was reached.", "scope")
)

func (m stormMetrics) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPlaces, descRunning, descWaited, descUnidentified, descRate, descRoom, descRoomCap,
		descPending, descRoomFull, descRoomTimedOut, descLaneRefused, descUnanswered, descRefusals} {
		ch <- d
	}
}

func (m stormMetrics) Collect(ch chan<- prometheus.Metric) {
	g := m.gate.stats()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge(descPlaces, float64(g.Limit))
	gauge(descRunning, float64(g.InFlight))
	counter(descWaited, g.Waited)
	counter(descUnidentified, g.Unidentified)
	gauge(descRate, g.Rate)
	gauge(descRoom, float64(g.Room))
	gauge(descRoomCap, float64(g.RoomCap))
	gauge(descPending, float64(g.Pending))
	counter(descRoomFull, g.RoomFull)
	counter(descRoomTimedOut, g.TimedOut)
	counter(descLaneRefused, g.LaneRefused)
	e := m.service.ends.snapshot()
	counter(descUnanswered, e.Closing, "closing")
	counter(descUnanswered, e.HelloTurn, "hello_turn")
	counter(descUnanswered, e.HelloTimeout, "hello_timeout")
	counter(descUnanswered, e.HelloEnded, "hello_ended")
	counter(descUnanswered, e.NotHello, "not_hello")
	r := m.gate.ends.snapshot()
	counter(descRefusals, r.RefusedConns, "connection")
	counter(descRefusals, r.RefusedPeers, "peer")
	counter(descRefusals, r.RefusedStreams, "stream")
	counter(descRefusals, r.RefusedProtocols, "protocol")
}
