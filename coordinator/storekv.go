package coordinator

import (
	"errors"
)

// The store's backends. Tx (store.go) speaks in records; a backend speaks
// in bytes: one transaction of gets, puts, deletes and ordered prefix scans
// that commits all of its writes or none. Two backends implement it:
// Badger in the data directory (the default, store_badger.go) and etcd
// (store_etcd.go), which several coordinators of a site can share.

// kvTxn is one backend transaction. Keys are the store's own (u/…, p/…);
// a backend may place them under a prefix of its own, which no key can
// leave. A transaction sees its own writes.
type kvTxn interface {
	// get returns a copy of key's value; ok is false when key is absent.
	get(key []byte) (value []byte, ok bool, err error)
	set(key, value []byte) error
	delete(key []byte) error
	// create sets key, and makes the commit fail with ErrStoreConflict if
	// key exists by then (or existed when the transaction read).
	create(key, value []byte) error
	// scan calls fn for each key with prefix, in key order (descending
	// when reverse), starting at start (inclusive; nil: the first key in
	// that order), until fn returns false or an error. key and value are
	// valid only during the call.
	scan(prefix, start []byte, reverse bool, fn func(key, value []byte) (bool, error)) error
	// setLeased sets key so that it lasts only while this coordinator
	// does: on etcd under the member's lease (etcd deletes it when the
	// process dies); on Badger, the only member, a plain set.
	setLeased(key, value []byte) error
	// revision is the store revision the transaction reads at, for a
	// watch from there (0 on Badger, which has no other writers).
	revision() (int64, error)
	// committed is the revision the transaction's commit made, once
	// update returned nil (0 on Badger, or when it wrote nothing).
	committed() int64
}

// kvBackend runs transactions.
type kvBackend interface {
	// view runs fn in a read-only transaction.
	view(fn func(kvTxn) error) error
	// update runs fn once and commits its writes durably: an error
	// wrapping ErrStoreConflict means another transaction changed what
	// fn read, and nothing was written. beforeCommit, if not nil, runs
	// between fn and the commit.
	update(fn func(kvTxn) error, beforeCommit func()) error
	// watch calls fn with every change under prefix after revision
	// after, in commit order, on a goroutine of the backend's, until
	// close. Own writes come back too. Badger has no other writer: its
	// watch returns and never calls fn.
	watch(prefix []byte, after int64, fn func(watchBatch))
	close() error
}

// storeEvent is one change a watch saw.
type storeEvent struct {
	// key is the store's key (p/<peer id>, settings, …).
	key string
	// value is the new value; nil when the key was deleted (by a
	// transaction, or by etcd when the lease that held it ended).
	value []byte
	// rev is the change's revision.
	rev int64
}

// watchBatch is what a watch hands its function at a time: the changes of
// one or more revisions in order or, with reset, every key under the
// prefix as of rev (the watch fell behind etcd's compaction): the watcher
// replaces what it holds of the prefix with them.
type watchBatch struct {
	events []storeEvent
	reset  bool
	rev    int64 // the latest revision the batch covers
}

// ErrStoreConflict is returned by Store.Update when its transaction lost
// a write conflict more times than it retries.
var ErrStoreConflict = errors.New("store transaction conflict")
