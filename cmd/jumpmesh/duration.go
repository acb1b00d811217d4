package main

import (
	"strconv"
	"strings"
	"time"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// parseDuration reads Go durations ("90m", "24h") plus the units people use
// for validity windows: d (days), w (weeks), y (365 days), e.g. "7d", "1y".
func parseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	units := map[byte]time.Duration{'d': 24 * time.Hour, 'w': 7 * 24 * time.Hour, 'y': 365 * 24 * time.Hour}
	if s != "" {
		if unit, ok := units[s[len(s)-1]]; ok {
			n, err := strconv.ParseFloat(s[:len(s)-1], 64)
			if err == nil && n >= 0 && n <= 1000 {
				return time.Duration(n * float64(unit)), nil
			}
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, catalog.Errorf(catalog.CodeInvalidArgument, "%q is not a duration (examples: 30m, 24h, 7d, 2w, 1y).", s)
	}
	return d, nil
}
