package coordinator

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
	"github.com/jumpmesh/jumpmesh/mesh/words"
)

// Search is `jumpmesh ls [QUERY]`. Each peer has one SearchDoc: everything
// a term compares, lower-cased once when the record changes, in one
// string; Match neither allocates nor uses regexp. The registry does not
// scan the docs: its search index (searchindex.go) narrows a query to
// candidates by trigram lists and per-peer columns, and only candidates
// are matched against their docs.
//
// What a search returns (decided for issue 16, at 100,000 stored peers):
// the first --limit peers in name order (1,000 by default, the CLI's
// default too; at most 5,000, and never more than fits one control
// message) and how many matched in all. A list of every one of 100,000
// peers would be 20–40 MB of views: that is an export, not a search, and
// its cost would be encoding and transfer, which no index removes. So the
// index must count every match the caller may see (the total), but sorts
// only the first limit (a bounded heap) and builds views of those alone;
// at the default limit, cloning and encoding the 1,000 views is then most
// of what `ls` with a broad query costs.
//
// Query grammar (terms are separated by whitespace; all must match):
//
//	term   = ["-"] (text | field ":" value)   "-" negates the term
//	text   = word | '"' any '"'                a substring of any field
//	value  = word | '"' any '"'                quotes may also sit inside a word
//
// Fields: name, hostname, tag, comments, user (alias console-user),
// private-ip, public-ip, ip (either), id match a substring; group matches
// a substring of the group's code or user name, or exactly when given with
// its prefix (jumpgroup:ops, user:alice); jumpgroup:X is short for
// group:jumpgroup:X; status and method match exactly and take only their
// known values; nat takes one word of what the peer reported of its NAT
// (natsearch.go: easy, hard, sequential, udp-blocked, …); last-access takes <DUR (accessed within DUR), >DUR (not
// accessed within DUR, including never) or never, where DUR is like 7d,
// 12h or 30m. Everything is case-insensitive.

// searchField is one part of a SearchDoc's text, in the order the text
// holds them.
type searchField uint8

const (
	searchName searchField = iota
	searchHostname
	searchTag
	searchComments
	searchGroup
	searchUsers
	searchPrivateIPs
	searchPublicIP // right after searchPrivateIPs: ip: matches both as one span
	searchID
	searchNAT // neither first nor last: its items are bounded by searchSep
	searchMethod
	searchFieldCount
	searchAll = searchFieldCount - 1
)

// searchSep separates the fields, and the items of list fields, in a
// SearchDoc's text. ParseQuery refuses control characters, so no value can
// match across two fields or two items.
const searchSep = '\x00'

// Statuses a peer can have, as the status: term takes them.
var searchStatuses = []string{"online", "offline", "passive", "lost", "uninstalled", "disabled", "deleted"}

// Jump methods, as the method: term takes them. "jumpoint" is a peer
// installed to talk through jumpoints (its record names them), whatever
// its connection type.
var searchMethods = []string{"active", "passive", "jumpoint"}

// SearchDoc is the flattened, lower-cased view of one peer that search
// matches. Build it with NewSearchDoc whenever the peer record changes; it
// holds no pointer into the record. The status is not in its text: it
// changes with time and sessions, not with the record, so the index
// (searchindex.go) keeps one doc per record and gives the status at match
// time (matchStatus).
type SearchDoc struct {
	ID peer.ID
	// text is every field but the status lower-cased, in searchField
	// order, separated by searchSep; ends[f] is where field f ends in text.
	text string
	// status is the one NewSearchDoc was given, for Match.
	status string
	ends   [searchFieldCount]uint32
	// nameKey is the first 16 bytes of the lower-cased name, big-endian and
	// zero-padded: most comparisons of a sort end on it without reading text.
	nameKey [2]uint64
	// idText is the peer ID as printed (12D3Koo…), for sorting.
	idText     string
	lastAccess int64
}

// NewSearchDoc builds the search view of p, whose status (online, offline,
// lost, uninstalled, disabled, deleted) the caller computed. A peer without
// a name is searched and sorted by its hostname.
func NewSearchDoc(p *pb.Peer, status string) SearchDoc {
	set, info := p.GetSettings(), p.GetInfo()
	d := SearchDoc{ID: peer.ID(p.GetId()), lastAccess: p.GetLastAccessUnix(), status: status}
	d.idText = d.ID.String()
	name := set.GetName()
	if name == "" {
		name = info.GetHostname()
	}
	users := append(slices.Clone(info.GetConsoleUsers()), p.GetStats().GetConsoleUsers()...)
	slices.Sort(users)
	users = slices.Compact(users)

	var b strings.Builder
	b.Grow(len(name) + len(info.GetHostname()) + len(set.GetTag()) + len(set.GetComments()) +
		len(set.GetGroup()) + len(p.GetPublicAddr()) + len(d.idText) + 64 + 16*(len(users)+len(info.GetPrivateIps())))
	field := func(f searchField, items ...string) {
		for i, s := range items {
			if i > 0 {
				b.WriteByte(searchSep)
			}
			b.WriteString(strings.ToLower(s))
		}
		d.ends[f] = uint32(b.Len())
		if f != searchAll {
			b.WriteByte(searchSep)
		}
	}
	field(searchName, name)
	field(searchHostname, info.GetHostname())
	field(searchTag, set.GetTag())
	field(searchComments, set.GetComments())
	field(searchGroup, set.GetGroup())
	field(searchUsers, users...)
	field(searchPrivateIPs, info.GetPrivateIps()...)
	field(searchPublicIP, searchAddrIP(p.GetPublicAddr()))
	field(searchID, d.idText)
	field(searchNAT, searchNATItems(p.GetStats().GetNat())...)
	field(searchMethod, searchJumpMethod(p))
	d.text = b.String()
	var key [16]byte
	copy(key[:], d.span(searchName, searchName))
	d.nameKey = [2]uint64{binary.BigEndian.Uint64(key[:8]), binary.BigEndian.Uint64(key[8:])}
	return d
}

// span is the text of fields from through to, inclusive.
func (d *SearchDoc) span(from, to searchField) string {
	start := uint32(0)
	if from > 0 {
		start = d.ends[from-1] + 1
	}
	return d.text[start:d.ends[to]]
}

// searchAddrIP is the IP in a public address given as an IP, IP:port or
// multiaddr (/ip4/…/tcp/…), so that ip: does not match ports or protocol
// names; anything else is kept as it is.
func searchAddrIP(addr string) string {
	if strings.HasPrefix(addr, "/") {
		parts := strings.Split(addr, "/")
		for i := 1; i+1 < len(parts); i++ {
			switch parts[i] {
			case "ip4", "ip6", "dns", "dns4", "dns6":
				return parts[i+1]
			}
		}
		return addr
	}
	if ap, err := netip.ParseAddrPort(addr); err == nil {
		return ap.Addr().String()
	}
	return addr
}

func searchJumpMethod(p *pb.Peer) string {
	if len(p.GetJumpoints()) > 0 {
		return "jumpoint"
	}
	switch p.GetSettings().GetConnectionType() {
	case pb.ConnectionType_CONNECTION_TYPE_ACTIVE:
		return "active"
	case pb.ConnectionType_CONNECTION_TYPE_PASSIVE:
		return "passive"
	}
	return ""
}

// SearchCompare orders search results: by name, case-insensitively, then by
// peer ID.
func SearchCompare(a, b *SearchDoc) int {
	if a.nameKey != b.nameKey {
		if a.nameKey[0] != b.nameKey[0] {
			return cmp.Compare(a.nameKey[0], b.nameKey[0])
		}
		return cmp.Compare(a.nameKey[1], b.nameKey[1])
	}
	if c := strings.Compare(a.span(searchName, searchName), b.span(searchName, searchName)); c != 0 {
		return c
	}
	return strings.Compare(a.idText, b.idText)
}

// SearchSort sorts search results with SearchCompare.
func SearchSort(docs []*SearchDoc) { slices.SortFunc(docs, SearchCompare) }

// FirstSorted returns the first k of docs in sort order, reordering docs:
// a full sort when k covers them, else a bounded max-heap of the k first
// (n log k rather than n log n: a list of 1,000 out of 100,000 matches).
func FirstSorted(docs []*SearchDoc, k int) []*SearchDoc { return firstSorted(docs, k, SearchCompare) }

// firstSorted is FirstSorted for any element and order.
func firstSorted[T any](xs []T, k int, compare func(a, b T) int) []T {
	if k >= len(xs) {
		slices.SortFunc(xs, compare)
		return xs
	}
	if k <= 0 {
		return xs[:0]
	}
	h := xs[:k] // a max-heap: h[0] is the last of the k first so far
	less := func(i, j int) bool { return compare(h[i], h[j]) > 0 }
	down := func(i int) {
		for {
			c := 2*i + 1
			if c >= k {
				return
			}
			if c+1 < k && less(c+1, c) {
				c++
			}
			if !less(c, i) {
				return
			}
			h[i], h[c] = h[c], h[i]
			i = c
		}
	}
	for i := k/2 - 1; i >= 0; i-- {
		down(i)
	}
	for _, x := range xs[k:] {
		if compare(x, h[0]) < 0 {
			h[0] = x
			down(0)
		}
	}
	slices.SortFunc(h, compare)
	return h
}

// Query is a parsed search. Its zero value (and the empty query) matches
// every peer. It is never changed after ParseQuery, so one Query may be
// matched from several goroutines.
type Query struct {
	terms []queryTerm
}

type queryOp uint8

const (
	queryContains      queryOp = iota // value is a substring of the span
	queryEquals                       // the span is exactly value
	queryGroupName                    // value is a substring of the group's code or user name
	queryAccessedSince                // last access at or after unix
	queryNeverAccessed                // no last access
	queryItem                         // value (between searchSeps) is one item of the list field
	queryStatus                       // the status is exactly value
)

type queryTerm struct {
	op       queryOp
	from, to searchField
	value    string
	unix     int64
	negate   bool
}

// queryFields maps each field name to how its term matches. last-access,
// group and jumpgroup get their op from the value.
var queryFields = map[string]queryTerm{
	"name":         {op: queryContains, from: searchName, to: searchName},
	"hostname":     {op: queryContains, from: searchHostname, to: searchHostname},
	"tag":          {op: queryContains, from: searchTag, to: searchTag},
	"comments":     {op: queryContains, from: searchComments, to: searchComments},
	"group":        {op: queryGroupName, from: searchGroup, to: searchGroup},
	"jumpgroup":    {op: queryEquals, from: searchGroup, to: searchGroup},
	"user":         {op: queryContains, from: searchUsers, to: searchUsers},
	"console-user": {op: queryContains, from: searchUsers, to: searchUsers},
	"private-ip":   {op: queryContains, from: searchPrivateIPs, to: searchPrivateIPs},
	"public-ip":    {op: queryContains, from: searchPublicIP, to: searchPublicIP},
	"ip":           {op: queryContains, from: searchPrivateIPs, to: searchPublicIP},
	"id":           {op: queryContains, from: searchID, to: searchID},
	"status":       {op: queryStatus},
	"method":       {op: queryEquals, from: searchMethod, to: searchMethod},
	"nat":          {op: queryItem, from: searchNAT, to: searchNAT},
	"last-access":  {op: queryAccessedSince},
}

// QueryFieldNames lists the fields a query term may name, sorted.
func QueryFieldNames() []string {
	names := make([]string, 0, len(queryFields))
	for n := range queryFields {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// ParseQuery parses a search (see the grammar above). now resolves relative
// last-access terms, so a Query built once answers as of that moment.
func ParseQuery(s string, now time.Time) (Query, error) {
	var q Query
	for i := 0; ; {
		for i < len(s) && queryIsSpace(s[i]) {
			i++
		}
		if i == len(s) {
			break
		}
		start := i
		t := queryTerm{op: queryContains, from: 0, to: searchAll}
		if s[i] == '-' {
			t.negate = true
			i++
		}
		field := ""
		j := i
		for j < len(s) && (s[j] == '-' || 'a' <= s[j]|0x20 && s[j]|0x20 <= 'z') {
			j++
		}
		if j > i && j < len(s) && s[j] == ':' {
			field, i = strings.ToLower(s[i:j]), j+1
		}
		var v strings.Builder
		quoted := false
		for ; i < len(s); i++ {
			c := s[i]
			if c == '"' {
				quoted = !quoted
				continue
			}
			if !quoted && queryIsSpace(c) {
				break
			}
			if c < 0x20 || c == 0x7f {
				return Query{}, catalog.Errorf(catalog.CodeInvalidArgument, "The search contains a control character (%q).", c)
			}
			v.WriteByte(c)
		}
		term := s[start:i]
		if quoted {
			return Query{}, catalog.Errorf(catalog.CodeInvalidArgument, "The search term %s has no closing quote.", term)
		}
		if v.Len() == 0 {
			if field != "" {
				return Query{}, catalog.Errorf(catalog.CodeInvalidArgument, "The search term %s has no value after the colon.", term)
			}
			return Query{}, catalog.Errorf(catalog.CodeInvalidArgument, "The search term %s is empty.", term)
		}
		t.value = strings.ToLower(v.String())
		if field != "" {
			if err := t.setField(field, term, now); err != nil {
				return Query{}, err
			}
		}
		q.terms = append(q.terms, t)
	}
	// Cheap terms first: most peers fail on one, and the rest are not read.
	slices.SortStableFunc(q.terms, func(a, b queryTerm) int { return a.cost() - b.cost() })
	return q, nil
}

func queryIsSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func (t *queryTerm) setField(field, term string, now time.Time) error {
	spec, ok := queryFields[field]
	if !ok {
		return catalog.Errorf(catalog.CodeInvalidArgument, "The search term %s names an unknown field %q; fields are %s (quote text that contains a colon).",
			term, field, strings.Join(QueryFieldNames(), ", "))
	}
	t.op, t.from, t.to = spec.op, spec.from, spec.to
	switch field {
	case "group":
		if strings.HasPrefix(t.value, words.SharedGroupPrefix) || strings.HasPrefix(t.value, words.PersonalGroupPrefix) {
			t.op = queryEquals
		}
	case "jumpgroup":
		t.value = words.SharedGroupPrefix + t.value
	case "status":
		if !slices.Contains(searchStatuses, t.value) {
			return catalog.Errorf(catalog.CodeInvalidArgument, "The search term %s: a status is %s.", term, strings.Join(searchStatuses, ", "))
		}
	case "method":
		if !slices.Contains(searchMethods, t.value) {
			return catalog.Errorf(catalog.CodeInvalidArgument, "The search term %s: a jump method is %s.", term, strings.Join(searchMethods, ", "))
		}
	case "nat":
		if !slices.Contains(searchNATWords, t.value) {
			return catalog.Errorf(catalog.CodeInvalidArgument, "The search term %s: a NAT is %s.", term, strings.Join(searchNATWords, ", "))
		}
		t.value = string(searchSep) + t.value + string(searchSep)
	case "last-access":
		return t.setLastAccess(term, now)
	}
	return nil
}

func (t *queryTerm) setLastAccess(term string, now time.Time) error {
	if t.value == "never" {
		t.op = queryNeverAccessed
		return nil
	}
	age, err := queryParseAge(t.value[min(1, len(t.value)):])
	if err != nil || (t.value[0] != '<' && t.value[0] != '>') {
		return catalog.Errorf(catalog.CodeInvalidArgument, "The search term %s: last-access takes <AGE (accessed within AGE), >AGE (not accessed within AGE) or never, with an AGE like 7d, 12h or 30m.", term)
	}
	t.op, t.unix = queryAccessedSince, now.Add(-age).Unix()
	if t.value[0] == '>' {
		t.negate = !t.negate
	}
	return nil
}

// queryParseAge parses a non-negative age: whole days (7d), or a Go
// duration (12h, 30m, 1h30m).
func queryParseAge(s string) (time.Duration, error) {
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.ParseUint(days, 10, 32)
		if err != nil || n > 1_000_000 {
			return 0, strconv.ErrRange
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err == nil && d < 0 {
		err = strconv.ErrRange
	}
	return d, err
}

func (t *queryTerm) cost() int {
	switch {
	case t.op == queryAccessedSince || t.op == queryNeverAccessed || t.op == queryStatus:
		return 0
	case t.op == queryEquals || t.op == queryItem:
		return 1
	case t.from == 0 && t.to == searchAll:
		return 3
	}
	return 2
}

// Match reports whether d matches every term of q, with the status d was
// built with.
func (q Query) Match(d *SearchDoc) bool { return q.matchStatus(d, d.status) }

// matchStatus reports whether d matches every term of q for a peer whose
// status is status.
func (q Query) matchStatus(d *SearchDoc, status string) bool {
	for i := range q.terms {
		t := &q.terms[i]
		if t.match(d, status) == t.negate {
			return false
		}
	}
	return true
}

func (t *queryTerm) match(d *SearchDoc, status string) bool {
	switch t.op {
	case queryContains:
		// Text matches the status too, as if it were a field of its own
		// (no value holds searchSep, so none matches across fields).
		return strings.Contains(d.span(t.from, t.to), t.value) || t.to == searchAll && strings.Contains(status, t.value)
	case queryEquals:
		return d.span(t.from, t.to) == t.value
	case queryStatus:
		return status == t.value
	case queryGroupName:
		return groupNameContains(d.span(searchGroup, searchGroup), t.value)
	case queryItem:
		// The field's items with the separators around them.
		return strings.Contains(d.text[d.ends[t.from-1]:d.ends[t.to]+1], t.value)
	case queryAccessedSince:
		return d.lastAccess != 0 && d.lastAccess >= t.unix
	case queryNeverAccessed:
		return d.lastAccess == 0
	}
	return false
}

// groupNameContains reports whether the code or user name of the
// lower-cased group g (jumpgroup:CODE, user:NAME) holds value.
func groupNameContains(g, value string) bool {
	if i := strings.IndexByte(g, ':'); i >= 0 {
		g = g[i+1:]
	}
	return strings.Contains(g, value)
}

// Search appends the docs that match q to out, sorted with SearchCompare,
// and returns it. Passing the previous result as out[:0] makes a repeated
// search allocation-free.
func (q Query) Search(docs []SearchDoc, out []*SearchDoc) []*SearchDoc {
	for i := range docs {
		if q.Match(&docs[i]) {
			out = append(out, &docs[i])
		}
	}
	SearchSort(out)
	return out
}
