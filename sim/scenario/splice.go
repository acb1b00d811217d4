package scenario

import (
	"bufio"
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// relayHTTPAddr is where a scenario relay serves /metrics and /healthz,
// inside its own host's namespace.
const relayHTTPAddr = "127.0.0.1:4833"

// relaySplicesMetric counts the bulk connections a relay spliced
// (relay/splice.go): a relayed forward that left the circuit.
const relaySplicesMetric = "jumpmesh_relay_splices_total"

// hostGet GETs url from inside host name's namespace (a daemon's HTTP
// listener on its own 127.0.0.1); the caller closes the body.
func (r *runner) hostGet(ctx context.Context, name, url string) (*http.Response, error) {
	host := r.lab.Host(name)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			return host.Dial(ctx, nil, network, a)
		}}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	return client.Do(req)
}

// relayMetric reads one series of the relay's /metrics, from inside its
// namespace.
func (r *runner) relayMetric(ctx context.Context, name, series string) (float64, error) {
	resp, err := r.hostGet(ctx, name, "http://"+relayHTTPAddr+"/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(io.LimitReader(resp.Body, 8<<20))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in the relay's metrics", series)
}

// expectSplices waits until relay name has spliced at least n bulk
// connections: relayed forwards that went through its splice, not its
// circuits.
func (r *runner) expectSplices(ctx context.Context, name string, n int, within time.Duration) (string, error) {
	within = cmp.Or(within, defaultWithin)
	var got float64
	var err error
	if poll(ctx, within, func(ctx context.Context) bool {
		got, err = r.relayMetric(ctx, name, relaySplicesMetric)
		return err == nil && got >= float64(n)
	}) {
		return fmt.Sprintf("%s spliced %.0f bulk connections", name, got), nil
	}
	if err != nil {
		return "", fmt.Errorf("%s: /metrics: %v", name, err)
	}
	return "", fmt.Errorf("%s spliced %.0f bulk connections after %v, want %d: the relayed forwards stayed in its circuits", name, got, within, n)
}
