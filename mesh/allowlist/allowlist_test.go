package allowlist_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/jumpmesh/jumpmesh/mesh/allowlist"
	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

func TestParseFormat(t *testing.T) {
	for in, want := range map[string]string{
		"10.20.0.0/16:22,3389":     "10.20.0.0/16:22,3389",
		"10.30.0.5:80":             "10.30.0.5:80",
		"10.30.0.5/32:8000-8100":   "10.30.0.5:8000-8100",
		"[fd00::5]:22":             "[fd00::5]:22",
		"fd00:1::/64:443":          "fd00:1::/64:443",
		"::ffff:10.1.2.3:22":       "10.1.2.3:22",
		"127.0.0.1:8080":           "127.0.0.1:8080",
		"0.0.0.0/0:443":            "0.0.0.0/0:443",
		"10.0.0.0/8:1-65535,22-22": "10.0.0.0/8:1-65535,22",
	} {
		r, err := allowlist.Parse(in)
		if err != nil {
			t.Errorf("Parse(%q): %v", in, err)
			continue
		}
		if got := allowlist.Format(r); got != want {
			t.Errorf("Format(Parse(%q)) = %q, want %q", in, got, want)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	for _, in := range []string{
		"", "10.20.0.0/16", "10.20.0.0/16:", "10.20.0.0/33:22", "10.20.1.0/16:22", "db.lan:5432",
		"10.0.0.1:0", "10.0.0.1:65536", "10.0.0.1:22,", "10.0.0.1:30-20", "10.0.0.1:-5", "0.0.0.0:22",
		"224.0.0.1:22", "fe80::1%eth0:22", "10.0.0.1:a",
		"10.0.0.1:" + strings.Repeat("1,", allowlist.MaxRanges) + "1",
	} {
		if _, err := allowlist.Parse(in); !catalog.HasCode(err, catalog.CodeInvalidArgument) {
			t.Errorf("Parse(%q) = %v, want invalid_argument", in, err)
		}
	}
	var many []string
	for i := range allowlist.MaxEntries + 1 {
		many = append(many, fmt.Sprintf("10.0.%d.0/24:22", i))
	}
	if _, err := allowlist.ParseList(many); !catalog.HasCode(err, catalog.CodeInvalidArgument) {
		t.Errorf("ParseList of %d entries = %v, want invalid_argument", len(many), err)
	}
	if _, err := allowlist.ParseList(many[:allowlist.MaxEntries]); err != nil {
		t.Errorf("ParseList of %d entries: %v", allowlist.MaxEntries, err)
	}
}

func TestAllows(t *testing.T) {
	rules, err := allowlist.ParseList([]string{"10.20.0.0/16:22,3389", "10.30.0.5:8000-8100", "0.0.0.0/0:443", "127.0.0.1:9000"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := allowlist.Compile(rules)
	if err != nil {
		t.Fatal(err)
	}
	for target, want := range map[string]bool{
		"10.20.3.4:22": true, "10.20.3.4:3389": true, "10.20.3.4:23": false, "10.21.0.1:22": false,
		"10.30.0.5:8000": true, "10.30.0.5:8100": true, "10.30.0.5:8101": false, "10.30.0.6:8000": false,
		"8.8.8.8:443": true, "8.8.8.8:80": false,
		// 0.0.0.0/0 does not open the jumpoint's own loopback; an explicit entry does.
		"127.0.0.1:443": false, "127.0.0.1:9000": true, "127.0.0.2:9000": false,
		"[::ffff:10.20.0.1]:22": true,
	} {
		if got := l.Allows(netip.MustParseAddrPort(target)); got != want {
			t.Errorf("Allows(%s) = %v, want %v", target, got, want)
		}
	}
	var empty *allowlist.List
	if empty.Allows(netip.MustParseAddrPort("10.20.0.1:22")) {
		t.Error("a nil list allows")
	}
}

func TestParseTarget(t *testing.T) {
	if ap, err := allowlist.ParseTarget("[::ffff:10.0.0.1]:22"); err != nil || ap.String() != "10.0.0.1:22" {
		t.Errorf("ParseTarget = %v, %v", ap, err)
	}
	for _, in := range []string{"db.lan:22", "10.0.0.1", "10.0.0.1:0", "[fe80::1%eth0]:22"} {
		if _, err := allowlist.ParseTarget(in); !catalog.HasCode(err, catalog.CodeInvalidArgument) {
			t.Errorf("ParseTarget(%q) = %v, want invalid_argument", in, err)
		}
	}
}
