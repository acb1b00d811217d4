package coordinator

import (
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// searchIndex is what `jumpmesh ls` reads instead of scanning the
// registry's map: at 100,000 peers that scan cost 40–80 ms in the
// coordinator, nine tenths of it reading each entry's group and status
// inputs through its protobuf record (a cache miss each), and the first
// search after start built every peer's doc (1.8–8 s).
//
// It has two parts, both changed only by the registry's writers under its
// write lock, in the same critical section as the entry they describe (so
// a search sees a committed record in the index as soon as the registry
// has it, and a record peerStore did not commit never):
//
//   - slots: one small struct per peer in one dense slice (a column store):
//     its doc, group (interned), status inputs (flags, last contact), last
//     access, jump method, NAT words and sort key. Visibility, status,
//     method:, nat:, group:, jumpgroup: and last-access: are decided here
//     without reading the record; a query of only such terms never reads
//     a doc.
//   - grams: for each text field (name, hostname, tag, comments, group,
//     console users, IPs), the sorted slots whose lower-cased value holds
//     each 3-byte sequence, filed in one of 2^18 buckets by a hash of
//     field and trigram (a flat array: filing 100,000 peers in maps of
//     exact trigrams took 6 s; a bucket shared by two trigrams only adds
//     candidates). A text term of 3 bytes or more gives the slots whose
//     buckets hold all its trigrams in its field(s), the shortest lists
//     intersected first.
//   - ids: every peer ID as printed, lower-cased, at a fixed stride in one
//     byte slice: random text gives a trigram per character that no one
//     searches, so id: (and free text, which may match an ID) scans
//     these 6 MB instead (strings.Index, about a millisecond).
//
// The index only narrows: every candidate that passes the slot's checks is
// matched against its doc with the full query (Query.matchStatus), so a
// trigram's false positive ("web" and "ebw…") cannot show, and access is
// decided per slot from the group the record holds, as visibilityOf says,
// before anything about the peer is counted or returned.
type searchIndex struct {
	slots []searchSlot
	free  []uint32   // slots of removed peers, reused last in first out
	grams [][]uint32 // gramBuckets lists, by gramKey
	ids   []byte     // slot i's lower-cased ID at i*idStride, zero-padded
	// longIDs are the slots whose ID does not fit idStride.
	longIDs map[uint32]bool
	scratch []uint32 // regram's
	// groups interns the groups of records (as stored: visibility compares
	// them exactly); groupLower is each lower-cased, as docs hold it.
	groupIDs   map[string]uint32
	groups     []string
	groupLower []string
	// tags interns the slots' tags (lower-cased, as docs hold them), so
	// that a tag: term is decided once per tag rather than per peer (a
	// doc read each: tag:linux at 100,000 peers checked 50,000 docs, 12
	// ms CPU of its `ls`). A tag no slot holds any more is forgotten and
	// its number reused, so churning tags cannot grow the table.
	tags tagTable
}

// tagTable numbers distinct strings with reference counts.
type tagTable struct {
	ids  map[string]uint32
	vals []string
	refs []uint32
	free []uint32
}

// acquire is v's number, counting one more slot that holds it.
func (t *tagTable) acquire(v string) uint32 {
	id, ok := t.ids[v]
	if !ok {
		if n := len(t.free); n > 0 {
			id, t.free = t.free[n-1], t.free[:n-1]
			t.vals[id] = v
		} else {
			id = uint32(len(t.vals))
			t.vals = append(t.vals, v)
			t.refs = append(t.refs, 0)
		}
		if t.ids == nil {
			t.ids = map[string]uint32{}
		}
		t.ids[v] = id
	}
	t.refs[id]++
	return id
}

// release counts one slot less that holds number id.
func (t *tagTable) release(id uint32) {
	if t.refs[id]--; t.refs[id] == 0 {
		delete(t.ids, t.vals[id])
		t.vals[id] = ""
		t.free = append(t.free, id)
	}
}

// slotFlags are a slot's status inputs (peerStatus).
type slotFlags uint8

const (
	slotDeleted slotFlags = 1 << iota
	slotUninstalled
	slotDisabled
	slotPassive
	slotOnline
)

type searchSlot struct {
	e          *peerEntry // nil: a free slot
	doc        *SearchDoc
	lastSeen   time.Time
	lastAccess int64
	nameKey    [2]uint64
	group      uint32
	tag        uint32 // in searchIndex.tags; held while e != nil
	flags      slotFlags
	method     uint8  // 1 + index in searchMethods, 0: none
	nat        uint16 // bit i: the doc holds searchNATWords[i]
}

func newSearchIndex() *searchIndex {
	return &searchIndex{grams: make([][]uint32, gramBuckets), longIDs: map[uint32]bool{}, groupIDs: map[string]uint32{}}
}

// file puts e (new or changed) in the index, building its doc from the
// record and latest statistics. The registry's write lock is held.
func (x *searchIndex) file(e *peerEntry) {
	if e.slot == 0 {
		var i uint32
		if n := len(x.free); n > 0 {
			i, x.free = x.free[n-1], x.free[:n-1]
		} else {
			i = uint32(len(x.slots))
			x.slots = append(x.slots, searchSlot{})
			x.ids = append(x.ids, make([]byte, idStride)...)
		}
		e.slot = i + 1
	}
	i := e.slot - 1
	rec := e.withStats()
	d := NewSearchDoc(rec, "")
	x.regram(i, x.slots[i].doc, &d)
	x.setSlot(i, e, rec, &d)
}

// setSlot fills slot i's columns for e, whose record with its latest
// statistics is rec and doc d (trigram lists are the caller's).
func (x *searchIndex) setSlot(i uint32, e *peerEntry, rec *pb.Peer, d *SearchDoc) {
	x.setID(i, d.span(searchID, searchID))
	s := &x.slots[i]
	tag := x.tags.acquire(d.span(searchTag, searchTag))
	if s.e != nil {
		x.tags.release(s.tag)
	}
	*s = searchSlot{e: e, doc: d, lastAccess: d.lastAccess, nameKey: d.nameKey, group: x.groupID(rec.GetSettings().GetGroup()), tag: tag,
		method: uint8(slices.Index(searchMethods, d.span(searchMethod, searchMethod)) + 1)}
	for _, w := range searchNATItems(rec.GetStats().GetNat()) {
		s.nat |= natBit(w)
	}
	x.refresh(e)
}

// fileAll files the peers loaded at start in an empty index: their docs
// and trigrams are built on every CPU, then each bucket's list is
// allocated once, at its size, in one backing array (filing them one by
// one took 3–5 s for 100,000 peers here, as long again as reading the
// store). An index that is not empty files them one by one.
func (x *searchIndex) fileAll(es []*peerEntry) {
	if len(x.slots) > 0 || len(es) == 0 {
		for _, e := range es {
			x.file(e)
		}
		return
	}
	n := len(es)
	docs := make([]SearchDoc, n)
	recs := make([]*pb.Peer, n)
	workers := min(runtime.GOMAXPROCS(0), (n+999)/1000)
	grams := make([][]uint32, workers) // each worker's trigrams, doc after doc
	ends := make([]int, n)             // where doc i's trigrams end in its worker's
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*n/workers, (w+1)*n/workers
		wg.Add(1)
		go func() {
			defer wg.Done()
			var out []uint32
			for i := lo; i < hi; i++ {
				recs[i] = es[i].withStats()
				docs[i] = NewSearchDoc(recs[i], "")
				out = appendDocGrams(out, &docs[i])
				ends[i] = len(out)
			}
			grams[w] = out
		}()
	}
	wg.Wait()
	counts := make([]uint32, gramBuckets)
	total := 0
	for _, g := range grams {
		for _, k := range g {
			counts[k]++
		}
		total += len(g)
	}
	backing := make([]uint32, total)
	off := uint32(0)
	for k, c := range counts {
		if c > 0 {
			x.grams[k] = backing[off : off : off+c]
			off += c
		}
	}
	x.slots = make([]searchSlot, n)
	x.ids = make([]byte, n*idStride)
	for w := range workers {
		lo, hi := w*n/workers, (w+1)*n/workers
		start := 0
		for i := lo; i < hi; i++ {
			for _, k := range grams[w][start:ends[i]] {
				if l := x.grams[k]; len(l) == 0 || l[len(l)-1] != uint32(i) { // a trigram repeated in one doc
					x.grams[k] = append(l, uint32(i))
				}
			}
			start = ends[i]
			es[i].slot = uint32(i) + 1
			x.setSlot(uint32(i), es[i], recs[i], &docs[i])
		}
	}
}

// refresh copies e's status inputs (session, last contact, record flags)
// into its slot, and drops its encoded view (every change to an entry's
// record, statistics or contact is filed or refreshed here). The
// registry's write lock is held.
func (x *searchIndex) refresh(e *peerEntry) {
	e.enc.Store(nil)
	e.encTable.Store(nil)
	if e.slot == 0 {
		return
	}
	s := &x.slots[e.slot-1]
	s.lastSeen, s.flags = e.lastSeen, recFlags(e.rec, e.online())
}

// unfile takes e out of the index. The registry's write lock is held.
func (x *searchIndex) unfile(e *peerEntry) {
	if e.slot == 0 {
		return
	}
	i := e.slot - 1
	x.regram(i, x.slots[i].doc, nil)
	x.tags.release(x.slots[i].tag)
	x.setID(i, "")
	x.slots[i] = searchSlot{}
	x.free = append(x.free, i)
	e.slot = 0
}

func (x *searchIndex) groupID(g string) uint32 {
	id, ok := x.groupIDs[g]
	if !ok {
		id = uint32(len(x.groups))
		x.groupIDs[g] = id
		x.groups = append(x.groups, g)
		x.groupLower = append(x.groupLower, strings.ToLower(g))
	}
	return id
}

// searchPlan is a query as the index runs it.
type searchPlan struct {
	// groupOK[g]: the caller may see group g and it passes every group
	// term; nil: every group passes.
	groupOK []bool
	// tagOK[t]: tag t passes every tag: term; nil: every tag passes.
	tagOK []bool
	// slotTerms are decided from the slot (status, method, nat,
	// last-access); docTerms needs the doc (anything else).
	slotTerms []slotTerm
	docTerms  bool
	// needStatus: a term reads the status (status:, or free text, which
	// matches it too); else only deleted is, and that is a flag.
	needStatus bool
	// lists are the candidate slots of each indexed text term (in the
	// search's scratch).
	lists [][]uint32
	// none: an indexed term has no candidate.
	none bool
	// clock gives the statuses.
	clock statusClock
}

// searchScratch is one search's working memory, reused by the next: the
// candidate lists of its text terms, their intersection and the matches.
// tag:linux at 100,000 peers allocated 1.4 MB of them a search (three
// copies of 50,000 candidates, two of 24,788 matches), 40 % of what an
// `ls` end to end allocated in a process holding 100,000 records, where
// the collector's marking of that heap is what a late `ls` waits for.
type searchScratch struct {
	lists   [][]uint32
	cands   []uint32
	matches []slotMatch
}

var searchScratches = sync.Pool{New: func() any { return new(searchScratch) }}

// list is scratch list k, empty.
func (sc *searchScratch) list(k int) []uint32 {
	for len(sc.lists) <= k {
		sc.lists = append(sc.lists, nil)
	}
	return sc.lists[k][:0]
}

// plan decides how to run q for a caller who may see the groups allow
// accepts (nil: all).
func (x *searchIndex) plan(q Query, allow func(group string) bool, sc *searchScratch) searchPlan {
	var p searchPlan
	var groupTerms, tagTerms []*queryTerm
	for i := range q.terms {
		t := &q.terms[i]
		switch {
		case t.op == queryStatus || t.op == queryAccessedSince || t.op == queryNeverAccessed || t.from == searchMethod || t.from == searchNAT:
			p.needStatus = p.needStatus || t.op == queryStatus
			p.slotTerms = append(p.slotTerms, slotTerm{t: t,
				method: uint8(slices.Index(searchMethods, t.value) + 1),
				nat:    natBit(strings.Trim(t.value, string(searchSep)))})
		case t.from == searchGroup && t.to == searchGroup:
			groupTerms = append(groupTerms, t)
		case t.from == searchTag && t.to == searchTag && t.op == queryContains:
			// Decided per tag below; its trigrams still narrow the slots
			// to check.
			tagTerms = append(tagTerms, t)
			if l, ok := x.candidates(sc.list(len(p.lists)), t); ok {
				sc.lists[len(p.lists)] = l
				p.none = p.none || len(l) == 0
				p.lists = append(p.lists, l)
			}
		default:
			p.docTerms = true
			p.needStatus = p.needStatus || t.to == searchAll
			if l, ok := x.candidates(sc.list(len(p.lists)), t); ok {
				sc.lists[len(p.lists)] = l
				if len(l) == 0 {
					p.none = true
				}
				p.lists = append(p.lists, l)
			}
		}
	}
	if allow != nil || len(groupTerms) > 0 {
		p.groupOK = make([]bool, len(x.groups))
		for g, name := range x.groups {
			ok := allow == nil || allow(name)
			for _, t := range groupTerms {
				ok = ok && t.matchGroup(x.groupLower[g]) != t.negate
			}
			p.groupOK[g] = ok
		}
	}
	if len(tagTerms) > 0 {
		p.tagOK = make([]bool, len(x.tags.vals))
		for g, tag := range x.tags.vals {
			ok := true
			for _, t := range tagTerms {
				ok = ok && strings.Contains(tag, t.value) != t.negate
			}
			p.tagOK[g] = ok
		}
	}
	return p
}

// matchGroup is a group term (group:, jumpgroup:) on a lower-cased group.
func (t *queryTerm) matchGroup(g string) bool {
	if t.op == queryGroupName {
		return groupNameContains(g, t.value)
	}
	return g == t.value
}

// slotTerm is a term decided from the slot, with its method or NAT word
// as the slot holds it.
type slotTerm struct {
	t      *queryTerm
	method uint8
	nat    uint16
}

// natBit is the slot's bit for NAT word w (0 for none).
func natBit(w string) uint16 {
	if i := slices.Index(searchNATWords, w); i >= 0 {
		return 1 << i
	}
	return 0
}

// match is the term on slot s, whose status is status.
func (st slotTerm) match(s *searchSlot, status string) bool {
	switch t := st.t; {
	case t.op == queryStatus:
		return status == t.value
	case t.op == queryAccessedSince:
		return s.lastAccess != 0 && s.lastAccess >= t.unix
	case t.op == queryNeverAccessed:
		return s.lastAccess == 0
	case t.from == searchMethod:
		return st.method != 0 && s.method == st.method
	case t.from == searchNAT:
		return s.nat&st.nat != 0
	}
	return false
}

// status is the slot's peerStatus.
func (s *searchSlot) status(st *pb.Settings, now time.Time) string {
	return statusOf(s.flags, s.lastSeen, st, now)
}

// statusAt is the slot's peerStatus on c.
func (s *searchSlot) statusAt(c *statusClock) string { return c.of(s.flags, s.lastSeen) }

// searchRequest is one `ls` as the registry runs it.
type searchRequest struct {
	query Query
	// allow says whether the caller may see a peer of a group; nil: all.
	allow          func(group string) bool
	settings       *pb.Settings
	now            time.Time
	includeDeleted bool
	// limit bounds the views returned (<= 0: all of them).
	limit int
	// shared: the views' records are shallow copies (sharedView), for a
	// caller that only encodes them (peerList); else deep copies.
	shared bool
	// view is how much of each record findEncoded sends.
	view pb.PeerListView
}

// find runs r against the index: the views of the first r.limit matching
// peers the caller may see, in SearchCompare order (each record as get
// returns it), and how many matched in all.
func (x *searchIndex) find(r searchRequest) ([]*pb.PeerView, int) {
	matches, total := x.first(r)
	clock := newStatusClock(r.settings, r.now)
	views := make([]*pb.PeerView, len(matches))
	for j, i := range matches {
		s := &x.slots[i]
		rec := s.e.view
		if r.shared {
			rec = s.e.sharedView
		}
		views[j] = &pb.PeerView{Peer: rec(), Status: s.statusAt(&clock)}
	}
	return views, total
}

// first is the slots of the first r.limit matching peers the caller may
// see, in SearchCompare order, and how many matched in all.
func (x *searchIndex) first(r searchRequest) ([]uint32, int) {
	sc := searchScratches.Get().(*searchScratch)
	defer searchScratches.Put(sc)
	matches := x.matchIn(r, sc)
	sc.matches = matches
	total := len(matches)
	limit := r.limit
	if limit <= 0 {
		limit = total
	}
	return x.order(matches, limit), total
}

// slotMatch is a matching slot with its sort key (the first 16 bytes of
// the lower-cased name), copied while the check had the slot in the
// cache: ordering the matches then compares a dense array (most
// comparisons end on key) instead of reading a slot at random for each
// comparison (2–2.5 ms of 24,788 matches' first 1,000 at 100,000 peers,
// most of it cache misses). With 8 bytes, names that share them (web-0123…)
// still read their slots.
type slotMatch struct {
	key  [2]uint64
	slot uint32
}

// before is whether match a sorts before b (SearchCompare).
func (x *searchIndex) before(a, b *slotMatch) bool {
	if a.key[0] != b.key[0] {
		return a.key[0] < b.key[0]
	}
	if a.key[1] != b.key[1] {
		return a.key[1] < b.key[1]
	}
	return SearchCompare(x.slots[a.slot].doc, x.slots[b.slot].doc) < 0
}

// order is the slots of the first limit of matches in SearchCompare order
// (matches is reordered): the first limit are selected by their keys a
// byte at a time (selectFirst), then sorted. A heap of the first 1,000
// of 24,788 matches was 0.8–1 ms at 100,000 peers, most of it comparisons.
func (x *searchIndex) order(matches []slotMatch, limit int) []uint32 {
	first := x.selectFirst(matches, max(limit, 0))
	slices.SortFunc(first, func(a, b slotMatch) int {
		if x.before(&a, &b) {
			return -1
		}
		if x.before(&b, &a) {
			return 1
		}
		return 0
	})
	out := make([]uint32, len(first))
	for j, m := range first {
		out[j] = m.slot
	}
	return out
}

// selectFirst moves the first k of m in SearchCompare order to m[:k], in
// no order, and returns m[:k] (m whole when k covers it). It is a radix
// select on the 16 bytes of the keys: at each byte, the matches whose
// byte is below the one where the kth falls are taken, those above it
// dropped, and only those that share it are looked at again; matches
// whose keys are equal to the last byte are ordered by their docs.
func (x *searchIndex) selectFirst(m []slotMatch, k int) []slotMatch {
	if k >= len(m) {
		return m
	}
	lo, hi, need := 0, len(m), k // m[:lo] taken, m[lo:hi] undecided
	for d := 0; d < 16 && need > 0 && need < hi-lo; d++ {
		shift := 56 - 8*uint(d%8)
		digit := func(s *slotMatch) int { return int(s.key[d/8] >> shift & 0xff) }
		var count [256]int
		for i := lo; i < hi; i++ {
			count[digit(&m[i])]++
		}
		b, below := 0, 0
		for below+count[b] < need {
			below += count[b]
			b++
		}
		// m[lo:hi] as below b, equal to b, above b.
		lt, i, gt := lo, lo, hi
		for i < gt {
			switch v := digit(&m[i]); {
			case v < b:
				m[lt], m[i] = m[i], m[lt]
				lt++
				i++
			case v > b:
				gt--
				m[i], m[gt] = m[gt], m[i]
			default:
				i++
			}
		}
		lo, hi, need = lt, gt, need-below
	}
	if need > 0 && need < hi-lo { // keys equal to their last byte: the docs decide
		rest := m[lo:hi]
		slices.SortFunc(rest, func(a, b slotMatch) int { return SearchCompare(x.slots[a.slot].doc, x.slots[b.slot].doc) })
	}
	return m[:lo+need]
}

// match is every slot that matches r and that the caller may see, in no
// particular order.
func (x *searchIndex) match(r searchRequest) []slotMatch { return x.matchIn(r, new(searchScratch)) }

// matchIn is match in sc's memory (the result is sc's too).
func (x *searchIndex) matchIn(r searchRequest, sc *searchScratch) []slotMatch {
	p := x.plan(r.query, r.allow, sc)
	p.clock = newStatusClock(r.settings, r.now)
	if p.none {
		return sc.matches[:0]
	}
	var cands []uint32
	switch len(p.lists) {
	case 0:
	case 1: // already the search's own
		cands = p.lists[0]
	default:
		cands = intersectAll(sc.cands[:0], p.lists)
		sc.cands = cands
	}
	check := func(i uint32) ([2]uint64, bool) {
		s := &x.slots[i]
		return s.nameKey, x.check(s, &p, &r)
	}
	n := len(x.slots)
	if len(p.lists) > 0 {
		n = len(cands)
	}
	return checkSlots(sc.matches, n, func(j int) uint32 {
		if len(p.lists) > 0 {
			return cands[j]
		}
		return uint32(j)
	}, check)
}

// check reports whether slot s matches r, planned as p.
func (x *searchIndex) check(s *searchSlot, p *searchPlan, r *searchRequest) bool {
	if s.e == nil || p.groupOK != nil && !p.groupOK[s.group] || p.tagOK != nil && !p.tagOK[s.tag] {
		return false
	}
	// Deleted is the first status peerStatus tells, from a flag: the
	// rest (a clock reading and the lost horizon) only when read.
	if !r.includeDeleted && s.flags&slotDeleted != 0 {
		return false
	}
	var status string
	if p.needStatus {
		status = s.statusAt(&p.clock)
	}
	for _, t := range p.slotTerms {
		if t.match(s, status) == t.t.negate {
			return false
		}
	}
	return !p.docTerms || r.query.matchStatus(s.doc, status)
}

// searchCheckChunk is the fewest slots checked by one goroutine: below
// it a search checks on the caller's goroutine alone. A check that reads a
// doc costs ~0.2–0.4 µs (a cache miss or two), so at 100,000 peers a text
// term's candidates (tag:linux, ~50,000) took 9 ms of a 15 ms search on
// one core; split over the cores it is that divided by their number, when
// they are free (BenchmarkSearchPeers100k).
const searchCheckChunk = 8192

// checkSlots is the slots at(0) … at(n-1) for which check holds, in that
// order, in out's storage (grown to n), checked by up to GOMAXPROCS
// goroutines when n is large: each fills its part of out, and the parts
// are then moved together. check only reads (the registry's read lock is
// held).
func checkSlots(out []slotMatch, n int, at func(int) uint32, check func(uint32) ([2]uint64, bool)) []slotMatch {
	out = slices.Grow(out[:0], n)[:n]
	workers := min(runtime.GOMAXPROCS(0), n/searchCheckChunk)
	if workers <= 1 {
		return out[:checkPart(out, 0, n, at, check)]
	}
	found := make([]int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		from, to := n*w/workers, n*(w+1)/workers
		wg.Go(func() { found[w] = checkPart(out[from:to], from, to, at, check) })
	}
	wg.Wait()
	k := 0
	for w := range workers {
		from := n * w / workers
		k += copy(out[k:], out[from:from+found[w]])
	}
	return out[:k]
}

// checkPart checks at(from) … at(to-1) into part, the matches first, and
// returns how many.
func checkPart(part []slotMatch, from, to int, at func(int) uint32, check func(uint32) ([2]uint64, bool)) int {
	k := 0
	for j := from; j < to; j++ {
		i := at(j)
		if key, ok := check(i); ok {
			part[k] = slotMatch{key, i}
			k++
		}
	}
	return k
}

// view is a copy of the record with the latest statistics and contact, as
// registry.get returns it. The registry's lock is held.
func (e *peerEntry) view() *pb.Peer {
	rec := proto.CloneOf(e.rec)
	if e.stats != nil {
		rec.Stats = e.stats
	}
	rec.LastSeenUnix = e.lastSeen.Unix()
	return rec
}

// sharedView is view without the deep copy: a new record holding the
// record's fields, its messages and lists shared with it. The registry
// never changes a record it holds (putAt files a copy and replaces it
// whole), so the view stays what it was when taken; its reader must not
// change it either. A deep copy of 1,000 records took 6–7 ms of a 15 ms
// `ls` at 100,000 peers (BenchmarkSearchPeers100k, tag:linux; 2 ms on the
// same 1,000 records in a loop, where they stay in the caches) and 6,000
// allocations; this one is 3–4 times cheaper, one allocation. Every field of pb.Peer is listed:
// TestSharedViewCopiesEveryField fails when a new one is not.
func (e *peerEntry) sharedView() *pb.Peer {
	r := e.rec
	rec := &pb.Peer{Id: r.Id, InstallerId: r.InstallerId, Settings: r.Settings, Info: r.Info, Stats: r.Stats,
		PublicAddr: r.PublicAddr, InstalledUnix: r.InstalledUnix, LastAccessUnix: r.LastAccessUnix,
		Disabled: r.Disabled, UninstalledUnix: r.UninstalledUnix, DeletedUnix: r.DeletedUnix, DeletedBy: r.DeletedBy,
		Jumpoints: r.Jumpoints, PassiveUnix: r.PassiveUnix}
	if e.stats != nil {
		rec.Stats = e.stats
	}
	rec.LastSeenUnix = e.lastSeen.Unix()
	return rec
}

// find is searchIndex.find under the registry's read lock.
func (r *registry) find(req searchRequest) ([]*pb.PeerView, int) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.index.find(req)
}
