package coordinator

import (
	"bytes"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/jumpmesh/jumpmesh/coordinator/etcdtest"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

// One audit log across coordinators: two members of a site (two stores on
// one etcd, instances a and b) append at once, many events in the same
// nanosecond and some behind events already stored, while a reader pages
// back from the newest. Every event is stored once, under a key naming its
// writer; two readers see the same order; the pager met no event twice,
// met what it did in the final order, and missed none of the events stored
// before it began (an event stored meanwhile behind its cursor it may
// miss: doc.go).
func TestAuditOneOrderAcrossCoordinators(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd")
	}
	srv := etcdtest.Start(t, etcdtest.Options{})
	prefix := "/jumpmesh/" + t.Name() + "/"
	open := func(instance string) *Store {
		cfg := testEtcdConfig(srv, prefix)
		cfg.Instance = instance
		st, err := OpenEtcdStore(cfg)
		if err != nil {
			t.Fatal(err)
		}
		st.instance = instance // as openSiteStore does
		t.Cleanup(func() { st.Close() })
		return st
	}
	a, b := open("a"), open("b")
	const writers, each = 4, 40
	base := time.Date(2026, 12, 3, 7, 0, 0, 0, time.UTC).UnixNano()
	appendOne := func(st *Store, w, i int) {
		// Events share nanoseconds with other writers' events, and the
		// second half fall among the first (a clock behind, a slow
		// commit): keys are not in commit order.
		at := base + int64(i%(each/2)/2)
		e := &pb.AuditEvent{Kind: AuditEnd, TimeUnixNano: at, Detail: fmt.Sprintf("%s-%d-%d", st.Instance(), w, i)}
		if err := st.Update(func(tx *Tx) error { _, err := tx.putAudit(e, st.Instance()); return err }); err != nil {
			t.Error(err)
		}
	}
	// A first half, stored before the pager starts.
	var wg sync.WaitGroup
	for w := range writers {
		st := []*Store{a, b}[w%2]
		wg.Go(func() {
			for i := range each / 2 {
				appendOne(st, w, i)
			}
		})
	}
	wg.Wait()
	before := auditDetails(t, a, nil)
	// The second half while b pages back, 7 events a page, each page
	// after 4 more events were stored.
	appended := make(chan struct{}, writers*each)
	for w := range writers {
		st := []*Store{a, b}[w%2]
		wg.Go(func() {
			for i := each / 2; i < each; i++ {
				appendOne(st, w, i)
				appended <- struct{}{}
			}
		})
	}
	go func() { wg.Wait(); close(appended) }()
	var paged []string
	var cursor []byte
	for {
		var events []*pb.AuditEvent
		var next []byte
		if err := b.View(func(tx *Tx) (err error) {
			events, next, err = tx.AuditPage(time.Unix(0, 0), cursor, func(*pb.AuditEvent) bool { return true }, 7)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		for i := len(events) - 1; i >= 0; i-- {
			paged = append(paged, events[i].GetDetail())
		}
		if next == nil {
			break
		}
		cursor = next
		for range 4 {
			<-appended
		}
	}
	for range appended {
	}
	final := auditDetails(t, a, nil)
	if len(final) != writers*each {
		t.Fatalf("%d events stored, want %d", len(final), writers*each)
	}
	if other := auditDetails(t, b, nil); fmt.Sprint(other) != fmt.Sprint(final) {
		t.Fatal("the two coordinators read the log in different orders")
	}
	pos := map[string]int{}
	for i, d := range final {
		pos[d] = len(final) - i // newest first, as the pager read
	}
	seen := map[string]bool{}
	last := 0
	for _, d := range paged {
		if seen[d] {
			t.Fatalf("the pager met %s twice", d)
		}
		seen[d] = true
		if pos[d] <= last {
			t.Fatalf("the pager met %s out of the log's order", d)
		}
		last = pos[d]
	}
	for _, d := range before {
		if !seen[d] {
			t.Fatalf("the pager missed %s, stored before it began", d)
		}
	}
	// Keys name their writer.
	err := a.View(func(tx *Tx) error {
		return tx.kv.scan([]byte("a/"), nil, false, func(k, v []byte) (bool, error) {
			e := new(pb.AuditEvent)
			if err := proto.Unmarshal(v, e); err != nil {
				return false, err
			}
			inst := e.GetDetail()[:1]
			if !bytes.Equal(k[10:12], []byte(inst+"\x00")) {
				return false, fmt.Errorf("event %s under key %x", e.GetDetail(), k)
			}
			return true, nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("paged %d events while %d were appended; %d stored before", len(paged), writers*each/2, len(before))
}

// auditDetails lists the log's details, oldest first.
func auditDetails(t *testing.T, st *Store, _ []byte) []string {
	t.Helper()
	var out []string
	var cursor []byte
	for {
		var events []*pb.AuditEvent
		var next []byte
		if err := st.View(func(tx *Tx) (err error) {
			events, next, err = tx.AuditPage(time.Unix(0, 0), cursor, func(*pb.AuditEvent) bool { return true }, 0)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		page := make([]string, 0, len(events))
		for _, e := range events {
			page = append(page, e.GetDetail())
		}
		out = append(page, out...)
		if next == nil {
			return out
		}
		cursor = next
	}
}
