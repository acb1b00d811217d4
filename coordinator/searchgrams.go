package coordinator

import (
	"bytes"
	"slices"
	"strings"
)

// The search index's text part (searchIndex says why): trigram lists per
// field in hashed buckets, and the IDs' strip, kept by the registry's
// writers (regram, setID) and read by a plan's text terms (candidates).

// gramFields are the fields with trigram lists. The ID is in ids, NAT
// words and the jump method are slot columns, the status is computed.
var gramFields = []searchField{searchName, searchHostname, searchTag, searchComments, searchGroup,
	searchUsers, searchPrivateIPs, searchPublicIP}

const (
	gramBuckets = 1 << 18
	// idStride holds a printed peer ID (52 characters for Ed25519, 46
	// for RSA) and at least one zero byte, so no value (which holds no
	// searchSep) matches across two. A longer ID is not stored there:
	// its slot is always a candidate.
	idStride = 64
)

// regram moves slot i's trigram lists from old's to d's (either may be
// nil): only the trigrams that differ are touched, so a record written
// again with the same text costs no list change.
func (x *searchIndex) regram(i uint32, old, d *SearchDoc) {
	switch {
	case old == nil && d == nil:
		return
	case old == nil: // a new peer: no set to compare (a repeat is a no-op)
		x.scratch = appendDocGrams(x.scratch[:0], d)
		for _, k := range x.scratch {
			x.addGram(k, i)
		}
		return
	case d == nil:
		x.scratch = appendDocGrams(x.scratch[:0], old)
		for _, k := range x.scratch {
			x.dropGram(k, i)
		}
		return
	}
	was := sortedGrams(appendDocGrams(x.scratch[:0], old))
	is := sortedGrams(appendDocGrams(was[len(was):], d))
	x.scratch = is[:0]
	for len(was) > 0 || len(is) > 0 {
		switch {
		case len(is) == 0 || len(was) > 0 && was[0] < is[0]:
			x.dropGram(was[0], i)
			was = was[1:]
		case len(was) == 0 || is[0] < was[0]:
			x.addGram(is[0], i)
			is = is[1:]
		default:
			was, is = was[1:], is[1:]
		}
	}
}

// setID writes slot i's ID text (lower-cased) in ids, or zeros.
func (x *searchIndex) setID(i uint32, id string) {
	b := x.ids[i*idStride : (i+1)*idStride]
	clear(b)
	delete(x.longIDs, i)
	if len(id) < idStride {
		copy(b, id)
	} else {
		x.longIDs[i] = true
	}
}

func (x *searchIndex) addGram(k, i uint32) {
	l := x.grams[k]
	if n := len(l); n == 0 || l[n-1] < i {
		x.grams[k] = append(l, i)
		return
	}
	if at, found := slices.BinarySearch(l, i); !found {
		x.grams[k] = slices.Insert(l, at, i)
	}
}

func (x *searchIndex) dropGram(k, i uint32) {
	l := x.grams[k]
	if at, found := slices.BinarySearch(l, i); found {
		x.grams[k] = slices.Delete(l, at, at+1)
	}
	if len(x.grams[k]) == 0 {
		x.grams[k] = nil
	}
}

// gramKey is the bucket of field f's trigram s[0:3] (a multiplicative
// hash: trigrams of one field that differ in a byte land apart).
func gramKey(f searchField, s string) uint32 {
	k := uint32(f)<<24 | uint32(s[0])<<16 | uint32(s[1])<<8 | uint32(s[2])
	return (k * 0x9E3779B1) >> (32 - 18)
}

// appendDocGrams appends d's trigram keys. A trigram across two items of
// a list field is left out: no value holds searchSep.
func appendDocGrams(out []uint32, d *SearchDoc) []uint32 {
	for _, f := range gramFields {
		out = appendGrams(out, f, d.span(f, f))
	}
	return out
}

// sortedGrams sorts keys and drops repeats, in place.
func sortedGrams(keys []uint32) []uint32 {
	slices.Sort(keys)
	return slices.Compact(keys)
}

func appendGrams(out []uint32, f searchField, s string) []uint32 {
	for i := 0; i+3 <= len(s); i++ {
		if j := strings.IndexByte(s[i:i+3], searchSep); j >= 0 {
			i += j
			continue
		}
		out = append(out, gramKey(f, s[i:]))
	}
	return out
}

// candidates is the slots that may match the text term t, sorted, in
// out's storage, and whether the index can tell (a negated term, or one
// shorter than a trigram, or free text that may match a status, method or
// NAT word, cannot narrow the search).
func (x *searchIndex) candidates(out []uint32, t *queryTerm) ([]uint32, bool) {
	if t.negate || t.op != queryContains || len(t.value) < 3 {
		return nil, false
	}
	if t.to == searchAll {
		for _, words := range [][]string{searchStatuses, searchMethods, searchNATWords} {
			for _, w := range words {
				if strings.Contains(w, t.value) {
					return nil, false
				}
			}
		}
	}
	out = out[:0]
	fields := 0
	for _, f := range gramFields {
		if f < t.from || f > t.to {
			continue
		}
		fields++
		out = x.fieldCandidates(out, f, t.value)
	}
	if t.from <= searchID && searchID <= t.to {
		fields++
		if strings.Trim(t.value, idChars) == "" { // else no ID can hold it
			out = x.idCandidates(out, t.value)
		}
	}
	if fields == 0 {
		return nil, false
	}
	if fields > 1 {
		slices.Sort(out)
		out = slices.Compact(out)
	}
	return out, true
}

// idChars are the characters of a lower-cased peer ID as printed (base58:
// no 0; an upper-case L gives l).
const idChars = "123456789abcdefghijklmnopqrstuvwxyz"

// idCandidates appends the live slots whose ID holds v, and those whose
// ID is too long for ids.
func (x *searchIndex) idCandidates(out []uint32, v string) []uint32 {
	b := []byte(v)
	for off := 0; off < len(x.ids); {
		j := bytes.Index(x.ids[off:], b)
		if j < 0 {
			break
		}
		i := (off + j) / idStride
		out = append(out, uint32(i))
		off = (i + 1) * idStride
	}
	for i := range x.longIDs {
		out = append(out, i)
	}
	return out
}

// fieldCandidates appends to out the slots whose field f holds every
// trigram of v.
func (x *searchIndex) fieldCandidates(out []uint32, f searchField, v string) []uint32 {
	var lists [][]uint32
	for i := 0; i+3 <= len(v); i++ {
		l := x.grams[gramKey(f, v[i:])]
		if len(l) == 0 {
			return out
		}
		lists = append(lists, l)
	}
	return intersectAll(out, lists)
}

// intersectAll appends to out the slots in every list, shortest lists
// first; it does not change the lists (sorted, and not out's storage).
func intersectAll(out []uint32, lists [][]uint32) []uint32 {
	if len(lists) == 0 {
		return out
	}
	slices.SortFunc(lists, func(a, b []uint32) int { return len(a) - len(b) })
	n := len(out)
	out = append(out, lists[0]...)
	for _, l := range lists[1:] {
		if len(out) == n {
			break
		}
		out = out[:n+len(intersectInto(out[n:], l))]
	}
	return out
}

// intersectInto keeps the slots of a (sorted) that are in b (sorted),
// in a's storage: by binary search in b when a is much the shorter, else
// by merging.
func intersectInto(a, b []uint32) []uint32 {
	n := 0
	if len(a)*16 < len(b) {
		for _, v := range a {
			j, found := slices.BinarySearch(b, v)
			if found {
				a[n] = v
				n++
			}
			b = b[j:]
		}
		return a[:n]
	}
	j := 0
	for _, v := range a {
		for j < len(b) && b[j] < v {
			j++
		}
		if j < len(b) && b[j] == v {
			a[n] = v
			n++
		}
	}
	return a[:n]
}
