package coordinator

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

var searchTestNow = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// searchTestID is an Ed25519-style peer ID (12D3KooW…) whose key bytes are
// all b: real-looking and cheap, without generating keys.
func searchTestID(b byte) []byte {
	id := []byte{0x00, 0x24, 0x08, 0x01, 0x12, 0x20}
	for range 32 {
		id = append(id, b)
	}
	return id
}

func searchTestPeers() []*pb.Peer {
	day := int64(24 * 60 * 60)
	return []*pb.Peer{{
		Id: searchTestID(1),
		Settings: &pb.InstallerDefaults{Name: "web-01", Tag: "Linux", Comments: "Rack 4, row B",
			Group: "jumpgroup:ops", ConnectionType: pb.ConnectionType_CONNECTION_TYPE_ACTIVE},
		Info:           &pb.PeerInfo{Hostname: "web01.example", PrivateIps: []string{"10.1.2.3", "192.168.0.5"}, ConsoleUsers: []string{"alice"}},
		Stats:          &pb.PeerStats{ConsoleUsers: []string{"Bob"}},
		PublicAddr:     "/ip4/203.0.113.7/tcp/4001",
		LastAccessUnix: searchTestNow.Unix() - 2*day,
	}, {
		Id:         searchTestID(2),
		Settings:   &pb.InstallerDefaults{Tag: "windows", Group: "user:carol", ConnectionType: pb.ConnectionType_CONNECTION_TYPE_PASSIVE},
		Info:       &pb.PeerInfo{Hostname: "DB-Primary", PrivateIps: []string{"10.9.9.9"}},
		PublicAddr: "198.51.100.4",
	}, {
		Id: searchTestID(3),
		Settings: &pb.InstallerDefaults{Name: "Mail 02", Tag: "linux", Comments: "web server too",
			Group: "jumpgroup:devops", ConnectionType: pb.ConnectionType_CONNECTION_TYPE_ACTIVE},
		Info:           &pb.PeerInfo{Hostname: "mx"},
		PublicAddr:     "[2001:db8::1]:4001",
		LastAccessUnix: searchTestNow.Unix() - 40*day,
	}}
}

var searchTestStatuses = []string{"online", "offline", "lost"}

func searchTestDocs() []SearchDoc {
	var docs []SearchDoc
	for i, p := range searchTestPeers() {
		docs = append(docs, NewSearchDoc(p, searchTestStatuses[i]))
	}
	return docs
}

func TestQueryParse(t *testing.T) {
	text := func(v string, neg bool) queryTerm {
		return queryTerm{op: queryContains, from: 0, to: searchAll, value: v, negate: neg}
	}
	name := func(v string, neg bool) queryTerm {
		return queryTerm{op: queryContains, from: searchName, to: searchName, value: v, negate: neg}
	}
	cases := []struct {
		in   string
		want []queryTerm
	}{
		{"", nil},
		{" \t ", nil},
		{"web", []queryTerm{text("web", false)}},
		{"  WEB-0004  ", []queryTerm{text("web-0004", false)}},
		{`"web 01"`, []queryTerm{text("web 01", false)}},
		{`-"web 01"`, []queryTerm{text("web 01", true)}},
		{`name:"Web 01"`, []queryTerm{name("web 01", false)}},
		{`Name:web`, []queryTerm{name("web", false)}},
		{`name:web"  "01`, []queryTerm{name("web  01", false)}},
		{`-name:web`, []queryTerm{name("web", true)}},
		{`--x`, []queryTerm{text("-x", true)}}, // negation of the text "-x"
		{`"a:b"`, []queryTerm{text("a:b", false)}},
		{`fe80::1`, []queryTerm{text("fe80::1", false)}},
		{`12D3KooW`, []queryTerm{text("12d3koow", false)}},
		{`web db`, []queryTerm{text("web", false), text("db", false)}},
		{`group:ops`, []queryTerm{{op: queryGroupName, from: searchGroup, to: searchGroup, value: "ops"}}},
		{`group:JumpGroup:ops`, []queryTerm{{op: queryEquals, from: searchGroup, to: searchGroup, value: "jumpgroup:ops"}}},
		{`group:user:carol`, []queryTerm{{op: queryEquals, from: searchGroup, to: searchGroup, value: "user:carol"}}},
		{`jumpgroup:ops`, []queryTerm{{op: queryEquals, from: searchGroup, to: searchGroup, value: "jumpgroup:ops"}}},
		{`user:bob`, []queryTerm{{op: queryContains, from: searchUsers, to: searchUsers, value: "bob"}}},
		{`console-user:bob`, []queryTerm{{op: queryContains, from: searchUsers, to: searchUsers, value: "bob"}}},
		{`ip:10.1.2.`, []queryTerm{{op: queryContains, from: searchPrivateIPs, to: searchPublicIP, value: "10.1.2."}}},
		{`status:Online`, []queryTerm{{op: queryStatus, value: "online"}}},
		{`last-access:<7d`, []queryTerm{{op: queryAccessedSince, value: "<7d", unix: searchTestNow.Unix() - 7*86400}}},
		{`last-access:>12h`, []queryTerm{{op: queryAccessedSince, value: ">12h", unix: searchTestNow.Unix() - 12*3600, negate: true}}},
		{`-last-access:>30m`, []queryTerm{{op: queryAccessedSince, value: ">30m", unix: searchTestNow.Unix() - 30*60}}},
		{`last-access:never`, []queryTerm{{op: queryNeverAccessed, value: "never"}}},
		// Cheap terms are checked first; free text last.
		{`web tag:linux status:online`, []queryTerm{
			{op: queryStatus, value: "online"},
			{op: queryContains, from: searchTag, to: searchTag, value: "linux"},
			text("web", false),
		}},
	}
	for _, c := range cases {
		q, err := ParseQuery(c.in, searchTestNow)
		if err != nil {
			t.Errorf("ParseQuery(%q): %v", c.in, err)
			continue
		}
		if !slices.Equal(q.terms, c.want) {
			t.Errorf("ParseQuery(%q) = %+v, want %+v", c.in, q.terms, c.want)
		}
	}
}

func TestQueryParseErrors(t *testing.T) {
	cases := []struct{ in, mention string }{
		{"colour:red", `unknown field "colour"`},
		{"colour:red", "last-access, method, name"},
		{"web Name: db", "no value"},
		{`name:""`, "no value"},
		{`""`, "empty"},
		{"-", "empty"},
		{"web -", "empty"},
		{`"web 01`, "no closing quote"},
		{`name:"web`, "no closing quote"},
		{"status:sleeping", "online, offline, passive, lost, uninstalled, disabled, deleted"},
		{"status:onl", "a status is"},
		{"method:teleport", "active, passive, jumpoint"},
		{"last-access:7d", "last-access takes"},
		{"last-access:<7x", "last-access takes"},
		{"last-access:<-1d", "last-access takes"},
		{"last-access:<-1h", "last-access takes"},
		{"last-access:<", "last-access takes"},
		{"last-access:<99999999999d", "last-access takes"},
		{"web\x00x", "control character"},
		{"http://example", `unknown field "http"`},
	}
	for _, c := range cases {
		_, err := ParseQuery(c.in, searchTestNow)
		if !catalog.HasCode(err, catalog.CodeInvalidArgument) || !strings.Contains(err.Error(), c.mention) {
			t.Errorf("ParseQuery(%q) = %v, want invalid_argument mentioning %q", c.in, err, c.mention)
		}
	}
}

func TestQueryMatchEveryField(t *testing.T) {
	docs := searchTestDocs()
	idOf3 := peer.ID(searchTestID(3)).String()
	cases := []struct {
		q    string
		want []string // names (hostname when unnamed), in result order
	}{
		{"", []string{"db-primary", "mail 02", "web-01"}},
		// Free text reaches every field.
		{"web", []string{"mail 02", "web-01"}},
		{"WEB-01", []string{"web-01"}},
		{`"rack 4"`, []string{"web-01"}},
		{"web01.example", []string{"web-01"}},
		{"windows", []string{"db-primary"}},
		{"carol", []string{"db-primary"}},
		{"jumpgroup", []string{"mail 02", "web-01"}},
		{"bob", []string{"web-01"}},
		{"192.168", []string{"web-01"}},
		{"198.51.100.4", []string{"db-primary"}},
		{"online", []string{"web-01"}},
		{"passive", []string{"db-primary"}},
		{strings.ToLower(idOf3[len(idOf3)-10:]), []string{"mail 02"}},
		{"linux online", []string{"web-01"}},
		{"fe80::1", nil},
		// No match across two fields or two items of a list.
		{`"linux rack"`, nil},
		{`"alice bob"`, nil},
		{"name:web", []string{"web-01"}},
		{"name:db", []string{"db-primary"}},
		{`name:"mail 02"`, []string{"mail 02"}},
		{"hostname:mx", []string{"mail 02"}},
		{"hostname:web-01", nil},
		{"tag:LINUX", []string{"mail 02", "web-01"}},
		{"tag:web", nil},
		{`comments:"row b"`, []string{"web-01"}},
		{"comments:web", []string{"mail 02"}},
		{"group:ops", []string{"mail 02", "web-01"}},
		{"group:jumpgroup:ops", []string{"web-01"}},
		{"jumpgroup:ops", []string{"web-01"}},
		{"jumpgroup:op", nil},
		{"group:carol", []string{"db-primary"}},
		{"group:user:carol", []string{"db-primary"}},
		{"group:user", nil},
		{"group:jump", nil},
		{"user:bob", []string{"web-01"}},
		{"console-user:ALICE", []string{"web-01"}},
		{"user:carol", nil},
		{"method:active", []string{"mail 02", "web-01"}},
		{"method:passive", []string{"db-primary"}},
		{"method:jumpoint", nil},
		{"status:online", []string{"web-01"}},
		{"status:offline", []string{"db-primary"}},
		{"status:lost", []string{"mail 02"}},
		{"-status:online", []string{"db-primary", "mail 02"}},
		{"status:deleted", nil},
		{"private-ip:10.", []string{"db-primary", "web-01"}},
		{"private-ip:198.51", nil},
		{"public-ip:203.0.113", []string{"web-01"}},
		{"public-ip:4001", nil}, // ports and protocol names are not the IP
		{"public-ip:tcp", nil},
		{"public-ip:2001:db8::1", []string{"mail 02"}},
		{"ip:10.9", []string{"db-primary"}},
		{"ip:198.51", []string{"db-primary"}},
		{"ip:2001:db8", []string{"mail 02"}},
		{"ip:.", []string{"db-primary", "web-01"}},
		{"id:" + idOf3, []string{"mail 02"}},
		{"id:" + strings.ToUpper(idOf3), []string{"mail 02"}},
		{"id:12d3koow", []string{"db-primary", "mail 02", "web-01"}},
		{"last-access:<7d", []string{"web-01"}},
		{"last-access:<1d", nil},
		{"last-access:<49h", []string{"web-01"}},
		{"last-access:>30d", []string{"db-primary", "mail 02"}},
		{"last-access:>1d", []string{"db-primary", "mail 02", "web-01"}},
		{"last-access:>1000d", []string{"db-primary"}},
		{"-last-access:>30d", []string{"web-01"}},
		{"last-access:never", []string{"db-primary"}},
		{"-last-access:never", []string{"mail 02", "web-01"}},
		{"tag:linux -status:lost", []string{"web-01"}},
		{"-status:offline group:jumpgroup:ops", []string{"web-01"}},
		{"-web -db", nil},
		{"-web", []string{"db-primary"}},
	}
	for _, c := range cases {
		q, err := ParseQuery(c.q, searchTestNow)
		if err != nil {
			t.Errorf("ParseQuery(%q): %v", c.q, err)
			continue
		}
		var got []string
		for _, d := range q.Search(docs, nil) {
			got = append(got, d.span(searchName, searchName))
		}
		if !slices.Equal(got, c.want) {
			t.Errorf("%q matched %q, want %q", c.q, got, c.want)
		}
	}
}

func TestSearchSortsByNameThenPeerID(t *testing.T) {
	var docs []SearchDoc
	for i, n := range []string{"b", "A", "a", "B", "a"} {
		docs = append(docs, NewSearchDoc(&pb.Peer{Id: searchTestID(byte(50 - i)), Settings: &pb.InstallerDefaults{Name: n}}, "online"))
	}
	q, err := ParseQuery("", searchTestNow)
	if err != nil {
		t.Fatal(err)
	}
	got := q.Search(docs, nil)
	for i := 1; i < len(got); i++ {
		a, b := got[i-1], got[i]
		an, bn := a.span(searchName, searchName), b.span(searchName, searchName)
		if an > bn || an == bn && a.ID.String() >= b.ID.String() {
			t.Errorf("result %d (%s %s) sorts after result %d (%s %s)", i-1, an, a.ID, i, bn, b.ID)
		}
	}
}

func TestSearchDocOfEmptyPeer(t *testing.T) {
	d := NewSearchDoc(&pb.Peer{}, "")
	for f := searchField(0); f < searchFieldCount; f++ {
		if f == searchNAT {
			if s := d.span(f, f); s != "unknown" {
				t.Errorf("the NAT of a peer that reported none = %q, want unknown", s)
			}
			continue
		}
		if s := d.span(f, f); s != "" {
			t.Errorf("field %d of an empty peer = %q", f, s)
		}
	}
	q, _ := ParseQuery("-x", searchTestNow)
	if !q.Match(&d) {
		t.Error("-x does not match an empty peer")
	}
}

func TestSearchDoesNotAllocate(t *testing.T) {
	docs := searchTestDocs()
	q, err := ParseQuery(`-status:offline tag:linux "web" last-access:<7d group:ops`, searchTestNow)
	if err != nil {
		t.Fatal(err)
	}
	out := q.Search(docs, nil)
	if n := testing.AllocsPerRun(100, func() { out = q.Search(docs, out[:0]) }); n != 0 {
		t.Errorf("a repeated search allocates %v times", n)
	}
}

func TestSearchAddrIP(t *testing.T) {
	for in, want := range map[string]string{
		"/ip4/203.0.113.7/tcp/4001":         "203.0.113.7",
		"/ip6/2001:db8::1/udp/4001/quic-v1": "2001:db8::1",
		"/dns4/example.com/tcp/443":         "example.com",
		"203.0.113.7":                       "203.0.113.7",
		"203.0.113.7:4001":                  "203.0.113.7",
		"[2001:db8::1]:4001":                "2001:db8::1",
		"2001:db8::1":                       "2001:db8::1",
		"":                                  "",
	} {
		if got := searchAddrIP(in); got != want {
			t.Errorf("searchAddrIP(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzParseQuery: a query comes from a technician's command line through
// the control protocol; parsing must never panic, fail only with
// invalid_argument, and give a Query that matches without panicking.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"", "web", `name:"web 01" -status:offline`, "last-access:<7d", "last-access:>1h30m",
		`group:jumpgroup:ops ip:10.`, `-"`, `a:"b`, "fe80::1", "-", "id:12D3KooW", "method:jumpoint"} {
		f.Add(s)
	}
	docs := searchTestDocs()
	docs = append(docs, NewSearchDoc(&pb.Peer{}, ""))
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQuery(s, searchTestNow)
		if err != nil {
			if !catalog.HasCode(err, catalog.CodeInvalidArgument) {
				t.Fatalf("ParseQuery(%q) = %v, want invalid_argument", s, err)
			}
			return
		}
		q.Search(docs, nil)
	})
}

// TestFirstSorted: the bounded heap gives exactly the first k of a full
// sort, whatever k.
func TestFirstSorted(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var docs []*SearchDoc
	for i := range 2000 {
		d := NewSearchDoc(&pb.Peer{Id: []byte(fmt.Sprintf("id-%04d", i)),
			Settings: &pb.InstallerDefaults{Name: fmt.Sprintf("host-%03d", r.IntN(500))}}, StatusOffline)
		docs = append(docs, &d)
	}
	want := slices.Clone(docs)
	SearchSort(want)
	for _, k := range []int{0, 1, 2, 10, 999, 1999, 2000, 3000} {
		got := FirstSorted(slices.Clone(docs), k)
		if n := min(k, len(docs)); len(got) != n || !slices.Equal(got, want[:n]) {
			t.Errorf("k=%d: the first %d differ from a full sort", k, len(got))
		}
	}
}

// TestMethodJumpoint: a peer whose record names a jumpoint has the method
// jumpoint, whatever its connection type; the others keep theirs.
func TestMethodJumpoint(t *testing.T) {
	behind := &pb.Peer{Id: searchTestID(9), Jumpoints: [][]byte{searchTestID(8)},
		Settings: &pb.InstallerDefaults{Name: "plc-01", ConnectionType: pb.ConnectionType_CONNECTION_TYPE_ACTIVE}}
	docs := append(searchTestDocs(), NewSearchDoc(behind, "online"))
	for query, want := range map[string][]string{
		"method:jumpoint":  {"plc-01"},
		"-method:jumpoint": {"db-primary", "mail 02", "web-01"},
		"method:active":    {"mail 02", "web-01"},
	} {
		q, err := ParseQuery(query, searchTestNow)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for i := range docs {
			if q.Match(&docs[i]) {
				got = append(got, docs[i].span(searchName, searchName))
			}
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			t.Errorf("%s matched %v, want %v", query, got, want)
		}
	}
}
