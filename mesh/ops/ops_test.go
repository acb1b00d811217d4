package ops

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

func TestServe(t *testing.T) {
	defer goleak.VerifyNone(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "ops_test_total", Help: "A counter."}))
	health := func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, `{"status":"unhealthy"}`)
	}
	s, err := Serve("127.0.0.1:0", reg, health, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	get := func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + s.Addr() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(b)
	}
	if code, body := get("/metrics"); code != http.StatusOK || !strings.Contains(body, "ops_test_total 0") {
		t.Errorf("/metrics: %d %q", code, body)
	}
	if code, body := get("/healthz"); code != http.StatusServiceUnavailable || body != `{"status":"unhealthy"}` {
		t.Errorf("/healthz: %d %q", code, body)
	}
	if code, _ := get("/other"); code != http.StatusNotFound {
		t.Errorf("/other: %d, want 404", code)
	}
	http.DefaultClient.CloseIdleConnections()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + s.Addr() + "/healthz"); err == nil {
		t.Error("the endpoint still answers after Close")
	}
}

func TestServeOff(t *testing.T) {
	for _, addr := range []string{"", Off} {
		s, err := Serve(addr, prometheus.NewRegistry(), nil, nil)
		if s != nil || err != nil {
			t.Errorf("Serve(%q) = %v, %v; want nothing served", addr, s, err)
		}
		if s.Addr() != "" || s.Close() != nil {
			t.Errorf("an endpoint turned off has an address or fails to close")
		}
	}
}

func TestServeBusyAddress(t *testing.T) {
	s, err := Serve("127.0.0.1:0", prometheus.NewRegistry(), func(http.ResponseWriter, *http.Request) {}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := Serve(s.Addr(), prometheus.NewRegistry(), nil, nil); err == nil || !strings.Contains(err.Error(), "listening for metrics on "+s.Addr()) {
		t.Errorf("a busy address: %v", err)
	}
}
