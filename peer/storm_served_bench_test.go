package peer_test

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jumpmesh/jumpmesh/coordinator"
)

// servedBuckets reads, in the coordinator child, the histogram of the time
// the coordinator took to serve control requests named request
// (jumpmesh_coordinator_request_duration_seconds, from its /metrics): "LE
// COUNT" pairs, cumulative, as Prometheus writes them.
func servedBuckets(c *coordinator.Coordinator, request string) string {
	if c.HTTPAddr() == "" {
		return ""
	}
	resp, err := http.Get("http://" + c.HTTPAddr() + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var out []string
	sc := bufio.NewScanner(resp.Body)
	want := fmt.Sprintf(`request="%s"`, request)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "jumpmesh_coordinator_request_duration_seconds_bucket{") || !strings.Contains(line, want) {
			continue
		}
		i := strings.Index(line, `le="`)
		j := strings.LastIndexByte(line, ' ')
		if i < 0 || j < 0 {
			continue
		}
		le := line[i+4:]
		le = le[:strings.IndexByte(le, '"')]
		out = append(out, le+" "+line[j+1:])
	}
	return strings.Join(out, " ")
}

// servedQuantile is the upper bound of the bucket that holds quantile q
// of servedBuckets' histogram (0: none).
func servedQuantile(buckets string, q float64) time.Duration {
	f := strings.Fields(buckets)
	if len(f) < 2 {
		return 0
	}
	total, _ := strconv.ParseFloat(f[len(f)-1], 64)
	for i := 0; i+1 < len(f); i += 2 {
		n, _ := strconv.ParseFloat(f[i+1], 64)
		if n >= q*total {
			le, err := strconv.ParseFloat(f[i], 64)
			if err != nil || math.IsInf(le, 1) {
				return 0
			}
			return time.Duration(le * float64(time.Second))
		}
	}
	return 0
}
