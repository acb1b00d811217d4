package mesh

import (
	"context"
	"log/slog"
	"os"
	"strings"

	"github.com/libp2p/go-libp2p/gologshim"
)

// libp2p logs through gologshim: one slog handler per subsystem, at the
// level GOLOG_LOG_LEVEL gives it (error by default), on stderr. Its TCP
// transport logs an error for every connection whose net.Conn cannot set
// TCP keepalives — every jumpoint tunnel (mesh/tunnel), which is a libp2p
// stream, not a socket, and needs none. A console would print that line
// in the technician's terminal on every jump to a peer behind a jumpoint.
// libp2pLogs is libp2p's own default handler (same levels, same output)
// minus that one message; it is installed in init, before libp2p logs.
type libp2pLogs struct {
	base   slog.Handler
	system string
	cfg    *gologshim.Config
}

// keepaliveNoise is the start of the TCP transport's message about a
// connection without keepalives.
const keepaliveNoise = "can't set TCP keepalives"

func init() {
	base := slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})
	gologshim.SetDefaultHandler(&libp2pLogs{base: base, cfg: gologshim.ConfigFromEnv()})
}

func (h *libp2pLogs) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.cfg.LevelForSystem(h.system)
}

func (h *libp2pLogs) Handle(ctx context.Context, r slog.Record) error {
	if h.system == "tcp-tpt" && strings.HasPrefix(r.Message, keepaliveNoise) {
		return nil
	}
	return h.base.Handle(ctx, r)
}

func (h *libp2pLogs) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	for _, a := range attrs {
		if a.Key == "logger" {
			c.system = a.Value.String()
		}
	}
	c.base = h.base.WithAttrs(attrs)
	return &c
}

func (h *libp2pLogs) WithGroup(name string) slog.Handler {
	c := *h
	c.base = h.base.WithGroup(name)
	return &c
}
