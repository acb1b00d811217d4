package coordinator_test

import (
	"bufio"
	"strconv"
	"strings"
	"testing"

	"github.com/jumpmesh/jumpmesh/console"
	"github.com/jumpmesh/jumpmesh/coordinator/coordinatortest"
)

// An operator sees a storm on /metrics: with every handshake place of the
// main port taken and connections queued behind (coordinatortest.JamMainPort),
// the gate's places are all running, handshakes have waited, and the
// waiting room, the lane and the reasons attempts end unanswered are
// there to watch.
func TestStormMetricsOnTheHTTPEndpoint(t *testing.T) {
	s := coordinatortest.New(t, console.Login)
	s.JamMainPort(t)
	st := s.Coord.Handshakes()
	m := scrape(t, "http://"+s.Coord.HTTPAddr()+"/metrics")
	places, running := m["jumpmesh_coordinator_handshake_places"], m["jumpmesh_coordinator_handshakes_running"]
	if places < 1 || running < places {
		t.Errorf("handshake places %v, running %v: want every place running (the gate: %+v)", places, running, st)
	}
	// A counter read after the gate's own figure: at least as many.
	if waited := m["jumpmesh_coordinator_handshakes_waited_total"]; waited < 1 || waited < float64(st.Waited) {
		t.Errorf("handshakes waited %v, want the queued ones (the gate before: %+v)", waited, st)
	}
	if c := m["jumpmesh_coordinator_waiting_room_capacity"]; c < 1024 {
		t.Errorf("waiting room capacity %v, want at least the cold gate's 1,024", c)
	}
	for _, series := range []string{
		"jumpmesh_coordinator_handshakes_unidentified_total", "jumpmesh_coordinator_handshakes_per_second",
		"jumpmesh_coordinator_waiting_room_connections", "jumpmesh_coordinator_waiting_room_full_total",
		"jumpmesh_coordinator_connections_unidentified",
		"jumpmesh_coordinator_waiting_room_timeouts_total", "jumpmesh_coordinator_lane_refused_total",
		`jumpmesh_coordinator_peer_attempts_unanswered_total{reason="hello_timeout"}`,
		`jumpmesh_coordinator_resource_refusals_total{scope="connection"}`,
	} {
		if _, ok := m[series]; !ok {
			t.Errorf("/metrics lacks %s", series)
		}
	}
}

// scrape reads a /metrics page into series (name with its labels) and value.
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	m := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(get(t, url)))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}
