package mesh

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/libp2p/go-libp2p/gologshim"
)

// TestLibp2pLogsDropOnlyTheKeepaliveNoise: the TCP transport's keepalive
// complaint about tunnels is dropped; its other errors, and the same
// words from another subsystem, are written; levels are libp2p's own.
func TestLibp2pLogsDropOnlyTheKeepaliveNoise(t *testing.T) {
	var buf bytes.Buffer
	h := &libp2pLogs{base: slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), cfg: gologshim.ConfigFromEnv()}
	tcp := slog.New(h.WithAttrs([]slog.Attr{slog.String("logger", "tcp-tpt")}))
	other := slog.New(h.WithAttrs([]slog.Attr{slog.String("logger", "swarm2")}))
	tcp.Error("can't set TCP keepalives. net.Conn doesn't support SetKeepAlive")
	tcp.Error("failed to enable TCP keepalive")
	other.Error("can't set TCP keepalives, says another subsystem")
	if !h.Enabled(context.Background(), slog.LevelError) || h.Enabled(context.Background(), slog.LevelDebug-4) {
		t.Error("levels differ from libp2p's (GOLOG_LOG_LEVEL)")
	}
	out := buf.String()
	if strings.Contains(out, "doesn't support") || !strings.Contains(out, "failed to enable") || !strings.Contains(out, "another subsystem") {
		t.Fatalf("logged:\n%s", out)
	}
}
