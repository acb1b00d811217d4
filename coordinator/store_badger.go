package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
)

// badgerKV is the embedded backend: a Badger database in the site's data
// directory. Nothing else imports Badger.
//
// Every write is synced before update returns (SyncWrites), so what the
// coordinator acknowledged survives a crash or kill -9.
type badgerKV struct{ db *badger.DB }

func openBadger(dir string, opts StoreOptions) (*badgerKV, error) {
	bo := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(badgerLogger{opts.logger()}).
		// A coordinator's state is small: keep Badger's memory modest so a
		// site runs on a small VM and tests can open many stores.
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(16 << 20).
		WithIndexCacheSize(8 << 20).
		WithValueLogFileSize(64 << 20).
		WithNumCompactors(2)
	if opts.InMemory {
		bo = bo.WithInMemory(true).WithDir("").WithValueDir("")
	}
	db, err := badger.Open(bo)
	if err != nil {
		return nil, fmt.Errorf("opening store in %s: %w", dir, err)
	}
	return &badgerKV{db: db}, nil
}

func (b *badgerKV) close() error { return b.db.Close() }

// watch: one process holds a Badger directory, so nothing changes that
// this coordinator did not write itself.
func (b *badgerKV) watch([]byte, int64, func(watchBatch)) {}

func (b *badgerKV) view(fn func(kvTxn) error) error {
	return b.db.View(func(txn *badger.Txn) error { return fn(badgerTxn{txn}) })
}

func (b *badgerKV) update(fn func(kvTxn) error, beforeCommit func()) error {
	err := b.db.Update(func(txn *badger.Txn) error {
		if err := fn(badgerTxn{txn}); err != nil {
			return err
		}
		if beforeCommit != nil {
			beforeCommit()
		}
		return nil
	})
	if errors.Is(err, badger.ErrConflict) {
		return fmt.Errorf("%w: %w", ErrStoreConflict, err)
	}
	return err
}

type badgerTxn struct{ txn *badger.Txn }

func (t badgerTxn) get(key []byte) ([]byte, bool, error) {
	item, err := t.txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	v, err := item.ValueCopy(nil)
	return v, err == nil, err
}

func (t badgerTxn) set(key, value []byte) error { return t.txn.Set(key, value) }
func (t badgerTxn) delete(key []byte) error     { return t.txn.Delete(key) }

// setLeased is set: on Badger this coordinator is the site's only member.
func (t badgerTxn) setLeased(key, value []byte) error { return t.txn.Set(key, value) }
func (t badgerTxn) revision() (int64, error)          { return 0, nil }
func (t badgerTxn) committed() int64                  { return 0 }

// create reads key first: Badger's conflict detection covers what a
// transaction read, so a concurrent create of the same key conflicts.
func (t badgerTxn) create(key, value []byte) error {
	_, err := t.txn.Get(key)
	switch {
	case err == nil:
		return fmt.Errorf("%w: %q exists", ErrStoreConflict, key)
	case !errors.Is(err, badger.ErrKeyNotFound):
		return err
	}
	return t.txn.Set(key, value)
}

func (t badgerTxn) scan(prefix, start []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	it := t.txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: prefix, Reverse: reverse})
	defer it.Close()
	switch {
	case start != nil:
		it.Seek(start)
	case reverse:
		// A reverse Rewind seeks to the prefix itself, before every key
		// under it: seek past the last key instead (no key of ours holds
		// 32 0xff bytes after its prefix).
		it.Seek(append(append([]byte(nil), prefix...), bytes.Repeat([]byte{0xff}, 32)...))
	default:
		it.Rewind()
	}
	for ; it.Valid(); it.Next() {
		item := it.Item()
		var more bool
		err := item.Value(func(v []byte) (err error) {
			more, err = fn(item.Key(), v)
			return err
		})
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// badgerLogger sends Badger's logs to slog; its chatty info lines go to
// debug, and are formatted only when debug is on: Badger logs four debug
// lines per commit batch (writeRequests), formatted for nothing at every
// enrollment before.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(trim(f, a)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(trim(f, a)) }
func (b badgerLogger) Infof(f string, a ...any)    { b.debug(f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.debug(f, a) }

func (b badgerLogger) debug(f string, a []any) {
	if b.l.Enabled(context.Background(), slog.LevelDebug) {
		b.l.Debug(trim(f, a))
	}
}

func trim(f string, a []any) string {
	return "badger: " + strings.TrimSpace(fmt.Sprintf(f, a...))
}
