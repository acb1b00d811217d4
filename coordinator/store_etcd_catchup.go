package coordinator

import (
	"context"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Catching up with the store (etcd). A coordinator's registry follows the
// peer records other coordinators write by watch, a few milliseconds
// behind their commits (presence.go). A console may ask any coordinator of
// the site, so `peer set web-01` asked of A just after web-01 enrolled
// through B could meet A's registry before B's commit: "no such peer" for
// a peer the site has. So before a lookup by name or ID answers that
// nothing matches, the coordinator waits until its watch has handed over
// every change the store had committed when it asked (catchUp), and
// looks again (Service.resolvePeer).
//
// How the watch knows where it is: each watch keeps a mark, the revision
// up to which it has handed over every change: the last event's, or the
// revision of a progress notice. catchUp reads the store's revision (a
// linearizable read), and if the mark is behind it asks etcd for a
// progress notice on the watch stream (RequestProgress): etcd answers with
// its revision once every event up to it was sent. Asked again every
// catchUpAsk, given up after catchUpWait: etcd sends no notice while a
// watcher of the stream is itself catching up, and a cut-off watch cannot
// catch up at all; the lookup then answers from what it has, as before.
//
// Badger needs none of this: the registry is written right after each
// commit, in the same process, and nothing else writes the store.

// catchUpWait bounds a lookup's wait for its watch; catchUpAsk is how
// often a progress notice is asked for meanwhile.
const (
	catchUpWait = time.Second
	catchUpAsk  = 100 * time.Millisecond
)

// watchMark is where one watch stands: every change up to rev handed over.
type watchMark struct {
	mu  sync.Mutex
	rev int64
	// moved is closed (and replaced) each time rev advances.
	moved chan struct{}
}

// advance moves the mark to rev if that is later.
func (m *watchMark) advance(rev int64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if rev > m.rev {
		m.rev = rev
		close(m.moved)
		m.moved = make(chan struct{})
	}
}

// at is the mark and a channel closed when it next moves.
func (m *watchMark) at() (int64, <-chan struct{}) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.rev, m.moved
}

// newMark records a mark for a watch of prefix (the store's key, with
// b.prefix), starting at after: the watch hands over what comes after it.
// A prefix may have several watches (the registry's, the followers').
func (b *etcdKV) newMark(prefix string, after int64) *watchMark {
	m := &watchMark{rev: after, moved: make(chan struct{})}
	b.marksMu.Lock()
	defer b.marksMu.Unlock()
	if b.marks == nil {
		b.marks = map[string][]*watchMark{}
	}
	b.marks[prefix] = append(b.marks[prefix], m)
	return m
}

// catchUp returns once every watch of prefix has handed over every change
// the store had committed when catchUp was called, or with ctx's error.
// A prefix nobody watches is caught up at once.
func (b *etcdKV) catchUp(ctx context.Context, prefix []byte) error {
	b.marksMu.Lock()
	marks := b.marks[b.prefix+string(prefix)]
	b.marksMu.Unlock()
	if len(marks) == 0 {
		return nil
	}
	// One key's count: the reply's header carries the store's revision.
	resp, err := b.cli.Get(ctx, b.prefix+"settings", clientv3.WithCountOnly())
	if err != nil {
		return etcdError(err)
	}
	want := resp.Header.GetRevision()
	// The watches' stream is keyed by its context's metadata: ask on it.
	ask := clientv3.WithRequireLeader(ctx)
	for _, m := range marks {
		for {
			rev, moved := m.at()
			if rev >= want {
				break
			}
			if err := b.cli.RequestProgress(ask); err != nil {
				return etcdError(err)
			}
			if hook := b.catchUpWaiting.Load(); hook != nil {
				(*hook)()
			}
			t := time.NewTimer(catchUpAsk)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-moved:
			case <-t.C:
			}
			t.Stop()
		}
	}
	return nil
}
