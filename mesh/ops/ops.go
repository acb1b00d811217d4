package ops

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Off is the address that turns the endpoint off.
const Off = "off"

// logError is the log field of an error (the daemons' name for it).
const logError = "error"

// Limits of the endpoint's HTTP server.
const (
	readHeaderTimeout = 10 * time.Second
	shutdownTimeout   = 5 * time.Second
)

// Server is a running endpoint. A nil *Server is an endpoint turned off:
// its Addr is "" and its Close does nothing.
type Server struct {
	http *http.Server
	addr net.Addr
	done chan struct{} // closed when Serve has returned
}

// Serve listens on addr and serves reg at /metrics and health at /healthz
// until Close. An empty addr or Off serves nothing (nil, nil). log gets
// the error should the server stop by itself.
func Serve(addr string, reg *prometheus.Registry, health http.HandlerFunc, log *slog.Logger) (*Server, error) {
	if addr == "" || addr == Off {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", health)
	s := &Server{
		http: &http.Server{Handler: mux, ReadHeaderTimeout: readHeaderTimeout},
		addr: ln.Addr(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", logError, err)
		}
	}()
	return s, nil
}

// Addr is the address the endpoint listens on, or "" when it is off.
func (s *Server) Addr() string {
	if s == nil {
		return ""
	}
	return s.addr.String()
}

// Close stops the endpoint, giving requests in flight a few seconds, and
// waits for its goroutine.
func (s *Server) Close() error {
	if s == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := s.http.Shutdown(ctx)
	<-s.done
	return err
}
