package coordinator

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// TestSharedViewCopiesEveryField sets each field of pb.Peer alone and
// checks that the shared view (peerList's) is the deep one (get's): a
// field added to the record and not to sharedView fails here rather than
// vanish from `ls`.
func TestSharedViewCopiesEveryField(t *testing.T) {
	fields := (&pb.Peer{}).ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		rec := &pb.Peer{}
		m := rec.ProtoReflect()
		switch {
		case fd.IsList():
			l := m.Mutable(fd).List()
			l.Append(sampleValue(l.NewElement(), fd))
		case fd.Kind() == protoreflect.MessageKind:
			m.Set(fd, protoreflect.ValueOfMessage(m.NewField(fd).Message()))
		default:
			m.Set(fd, sampleValue(m.NewField(fd), fd))
		}
		e := &peerEntry{rec: rec, lastSeen: time.Unix(rec.GetLastSeenUnix(), 0)}
		if deep, shared := e.view(), e.sharedView(); !proto.Equal(deep, shared) {
			t.Errorf("field %s: shared view %v, deep view %v", fd.Name(), shared, deep)
		}
	}
}

// sampleValue is a value of fd's kind that is not the zero value.
func sampleValue(zero protoreflect.Value, fd protoreflect.FieldDescriptor) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.StringKind:
		return protoreflect.ValueOfString("x")
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte("x"))
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(42)
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(42)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(42)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(42)
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	}
	return zero
}

// TestListedViewsStayAsTheyWere: a peer list's views share the registry's
// parts (sharedView); a later change of the peer (a new record filed by
// put) leaves a list already taken as it was, also while lists and
// changes run at once (-race).
func TestListedViewsStayAsTheyWere(t *testing.T) {
	svc := searchServiceBench(t, 50)
	views, _, err := svc.searchPeers(rootCaller, "", false, 0, true)
	if err != nil || len(views) != 50 {
		t.Fatalf("list: %d views, %v", len(views), err)
	}
	before := make([]*pb.Peer, len(views))
	for i, v := range views {
		before[i] = proto.CloneOf(v.GetPeer())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			if _, _, err := svc.searchPeers(rootCaller, "tag:linux", false, 0, true); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for _, v := range views {
		rec, _ := svc.peers.get(peer.ID(v.GetPeer().GetId()))
		rec.Settings.Name += "-renamed"
		rec.Settings.Tag = "changed"
		rec.Info.Hostname = "elsewhere"
		svc.peers.registry.put(rec)
	}
	<-done
	for i, v := range views {
		if !proto.Equal(v.GetPeer(), before[i]) {
			t.Fatalf("view %d changed after the list: %v, was %v", i, v.GetPeer(), before[i])
		}
	}
	if got, _, _ := svc.searchPeers(rootCaller, "tag:changed", false, 0, true); len(got) != 50 {
		t.Fatalf("the changes were not filed: %d peers tagged changed", len(got))
	}
}

// TestCheckSlotsInParallelKeepsOrder: above searchCheckChunk slots the
// checks run on several goroutines; the result is what one would give, in
// the same order.
func TestCheckSlotsInParallelKeepsOrder(t *testing.T) {
	const n = 5*searchCheckChunk + 17
	at := func(j int) uint32 { return uint32(n - j) } // not the identity
	check := func(i uint32) ([2]uint64, bool) { return [2]uint64{uint64(i) << 3, uint64(i)}, i%3 == 0 || i%7 == 1 }
	var want []slotMatch
	for j := range n {
		if key, ok := check(at(j)); ok {
			want = append(want, slotMatch{key, at(j)})
		}
	}
	// The first search's scratch is empty; the next reuses one holding
	// an earlier search's matches, longer or shorter than n.
	for _, out := range [][]slotMatch{nil, make([]slotMatch, 2*n), make([]slotMatch, 10, 20)} {
		for i := range out {
			out[i] = slotMatch{[2]uint64{^uint64(0), 1}, ^uint32(0)}
		}
		got := checkSlots(out, n, at, check)
		if !slices.Equal(got, want) {
			t.Fatalf("checkSlots: %d slots, want %d (first %v, want %v)", len(got), len(want), got[:min(5, len(got))], want[:5])
		}
	}
	var small []slotMatch // below searchCheckChunk: one goroutine
	for j := range 100 {
		if key, ok := check(at(j)); ok {
			small = append(small, slotMatch{key, at(j)})
		}
	}
	if got := checkSlots(make([]slotMatch, 3), 100, at, check); !slices.Equal(got, small) {
		t.Fatalf("checkSlots of 100 on one goroutine: %v, want %v", got, small)
	}
}

// TestOrderIsFirstSorted: the index's ordering of matches (a heap on
// their 16-byte keys, the docs read only on a tie) gives the first k in
// SearchCompare order, for names that share their first 8 or 16 bytes or
// all of them (then the peer ID decides), differ only in case, or are
// empty, at every k.
func TestOrderIsFirstSorted(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	prefixes := []string{"", "web-", "web-0123", "workstation-0001", "workstation-0001-", "WorkStation-0001-b", "a", "zz"}
	x := &searchIndex{}
	var docs []*SearchDoc
	for range 3000 {
		_, pub, _ := crypto.GenerateEd25519Key(nil)
		id, _ := peer.IDFromPublicKey(pub)
		name := prefixes[rng.IntN(len(prefixes))]
		if rng.IntN(4) > 0 {
			name += fmt.Sprint(rng.IntN(40))
		}
		d := NewSearchDoc(&pb.Peer{Id: []byte(id), Settings: &pb.InstallerDefaults{Name: name}}, "")
		x.slots = append(x.slots, searchSlot{doc: &d, nameKey: d.nameKey})
		docs = append(docs, &d)
	}
	for _, k := range []int{0, 1, 2, 10, 999, 1000, 2999, 3000, 5000} {
		matches := make([]slotMatch, len(x.slots))
		for i := range x.slots {
			matches[i] = slotMatch{x.slots[i].nameKey, uint32(i)}
		}
		rng.Shuffle(len(matches), func(i, j int) { matches[i], matches[j] = matches[j], matches[i] })
		got := x.order(matches, k)
		want := FirstSorted(slices.Clone(docs), k)
		if len(got) != len(want) {
			t.Fatalf("k=%d: %d slots, want %d", k, len(got), len(want))
		}
		for j := range got {
			if x.slots[got[j]].doc != want[j] {
				t.Fatalf("k=%d: place %d holds %q (%s), want %q (%s)", k, j, x.slots[got[j]].doc.span(searchName, searchName), x.slots[got[j]].doc.ID,
					want[j].span(searchName, searchName), want[j].ID)
			}
		}
	}
}

// BenchmarkOrder24788 is the order of the search workload's worst list:
// the first 1,000 of 24,788 matches named as sim scale names its peers,
// in slot order (random in names), against the heap it replaced.
func BenchmarkOrder24788(b *testing.B) {
	rng := rand.New(rand.NewPCG(11, 12))
	prefixes := []string{"web", "db", "mail", "build", "kiosk", "pos", "nas", "vpn"}
	x := &searchIndex{}
	for i := range 24788 {
		id := fmt.Sprintf("12D3KooW%044d", rng.Int64())
		d := NewSearchDoc(&pb.Peer{Id: []byte(id), Settings: &pb.InstallerDefaults{Name: fmt.Sprintf("%s-%06d", prefixes[i%8], rng.IntN(100000))}}, "")
		x.slots = append(x.slots, searchSlot{doc: &d, nameKey: d.nameKey})
	}
	fresh := func() []slotMatch {
		m := make([]slotMatch, len(x.slots))
		for i := range m {
			m[i] = slotMatch{x.slots[i].nameKey, uint32(i)}
		}
		return m
	}
	b.Run("select", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			m := fresh()
			b.StartTimer()
			x.order(m, 1000)
		}
	})
	b.Run("heap", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			m := fresh()
			b.StartTimer()
			firstSorted(m, 1000, func(a, c slotMatch) int {
				if x.before(&a, &c) {
					return -1
				}
				if x.before(&c, &a) {
					return 1
				}
				return 0
			})
		}
	})
}
