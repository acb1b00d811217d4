package coordinator

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Membership on etcd: each coordinator process of a site is a member, the
// key c/<instance> held by a lease of its own (TTL EtcdConfig.LockTTL, 10 s,
// kept alive until close). Its value is a memberRecord (members.go). The
// lease also holds the member's presence keys (o/<peer id>, presence.go):
// when the process dies, etcd deletes them all within the TTL.
//
// Every commit of a member is fenced on its own key: the Txn compares the
// key's create revision with the one this process made, so a coordinator
// whose lease ran out (etcd unreachable for longer than the TTL) writes
// nothing more — not even records — until it has registered again, which
// makes a new key. A second process registering the same instance while
// the first lives is refused (store_in_use, naming the first); other
// instances register side by side.
//
// coordinator migrate takes the exclusive lock instead (coordinator-lock,
// under a lease the same way): refused while any member lives, and no
// member registers while it is held.

// etcdFence is the key a store's commits are checked against.
type etcdFence struct {
	key   string
	rev   int64 // the key's create revision
	lease clientv3.LeaseID
}

// etcdMember is this store's registration: the record c/<instance> holds
// (announce changes its addresses) and who wants to hear of a new
// registration after a lost lease.
type etcdMember struct {
	key string
	mu  sync.Mutex
	rec memberRecord
	// onRegistered runs after every registration but the first (the
	// lease was lost and taken again): presence is put back under it.
	onRegistered func()
}

func (m *etcdMember) value() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, _ := json.Marshal(m.rec)
	return string(v)
}

// membersPrefix holds every member's key (c/<instance>).
const membersPrefix = "c/"

// register makes this store the member c/<cfg.Instance>.
func (b *etcdKV) register() error {
	b.member = &etcdMember{key: b.prefix + membersPrefix + b.cfg.Instance, rec: memberRecord{
		Instance: b.cfg.Instance, Started: time.Now().Unix(), Version: buildVersion(), Process: b.cfg.Holder,
	}}
	alive, err := b.acquire(true)
	if err != nil {
		return err
	}
	b.wg.Go(func() { b.keepLease(alive) })
	return nil
}

// takeLock takes the prefix's exclusive lock (coordinator migrate).
func (b *etcdKV) takeLock() error {
	alive, err := b.acquire(true)
	if err != nil {
		return err
	}
	b.wg.Go(func() { b.keepLease(alive) })
	return nil
}

// keepLease waits for the lease's keep-alive to end: when it ends before
// close (etcd unreachable past the TTL), commits fail (errStoreLockLost)
// until the key is made again under a new lease, which is tried every
// second.
func (b *etcdKV) keepLease(alive <-chan *clientv3.LeaseKeepAliveResponse) {
	what := "the store's exclusive lock"
	if b.member != nil {
		what = "this coordinator's member key " + b.member.key
	}
	for {
		f := b.fence.Load()
	held:
		for {
			select {
			case _, ok := <-alive:
				if !ok {
					break held
				}
			case lf := <-b.lost:
				if lf != f || b.fence.Load() != f {
					// About an older registration: a commit under the
					// lease lost before this one was signalled after
					// (or while) this process registered again.
					continue
				}
				// A commit found the key gone or made by another
				// process (an operator deleted it): this lease holds
				// nothing worth keeping.
				ctx, cancel := b.rctx()
				b.cli.Revoke(ctx, f.lease)
				cancel()
				for range alive {
				}
				break held
			}
		}
		if b.ctx.Err() != nil {
			return
		}
		b.log.Error(what+" lost its lease (etcd unreachable for longer than its TTL?); writes fail until it registers again", "ttl", b.cfg.lockTTL())
		for {
			select {
			case <-b.ctx.Done():
				return
			case <-time.After(time.Second):
			}
			ch, err := b.acquire(false)
			if err == nil {
				alive = ch
				b.log.Info("registered again: " + what)
				break
			}
			b.log.Warn("registering again: "+what, logError, err)
		}
		if b.member != nil {
			b.member.mu.Lock()
			fn := b.member.onRegistered
			b.member.mu.Unlock()
			if fn != nil {
				fn()
			}
		}
	}
}

// acquire makes the member key (or the lock) once under a new lease; with
// wait, it waits up to the TTL for a key held from the same place (see
// EtcdConfig.HolderPlace).
func (b *etcdKV) acquire(wait bool) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	ctx, cancel := b.rctx()
	defer func() { cancel() }()
	members := b.prefix + membersPrefix
	var key string
	var value func() string
	var cmps []clientv3.Cmp
	var orElse []clientv3.Op
	if b.member != nil {
		key, value = b.member.key, b.member.value
		cmps = []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(b.lockKey), "=", 0)}
		orElse = []clientv3.Op{clientv3.OpGet(key), clientv3.OpGet(b.lockKey)}
	} else {
		holder := b.cfg.Holder
		if holder == "" {
			holder = "a coordinator"
		}
		holder += " since " + time.Now().UTC().Format(time.RFC3339)
		key, value = b.lockKey, func() string { return holder }
		cmps = []clientv3.Cmp{clientv3.Compare(clientv3.CreateRevision(key), "=", 0),
			clientv3.Compare(clientv3.CreateRevision(members).WithPrefix(), "=", 0)}
		orElse = []clientv3.Op{clientv3.OpGet(key), clientv3.OpGet(members, clientv3.WithPrefix(), clientv3.WithLimit(1))}
	}
	var resp *clientv3.TxnResponse
	var lease *clientv3.LeaseGrantResponse
	var err error
	deadline := time.Now().Add(b.cfg.lockTTL() + time.Second)
	for {
		// A lease per try: waiting for an old key to lapse takes up to the
		// TTL, and a lease granted before the wait would lapse with it
		// ("requested lease not found" after a kill -9 and restart).
		if lease, err = b.cli.Grant(ctx, int64(max(b.cfg.lockTTL()/time.Second, 1))); err != nil {
			return nil, etcdError(err)
		}
		resp, err = b.cli.Txn(ctx).If(cmps...).Then(clientv3.OpPut(key, value(), clientv3.WithLease(lease.ID))).Else(orElse...).Commit()
		if err != nil || resp.Succeeded {
			break
		}
		heldKey, other := key, "another coordinator"
		for _, r := range resp.Responses {
			if rr := r.GetResponseRange(); rr != nil && len(rr.Kvs) > 0 {
				heldKey, other = string(rr.Kvs[0].Key), describeHolder(rr.Kvs[0].Value)
				break
			}
		}
		if !wait || b.cfg.HolderPlace == "" || heldKey != key || !strings.Contains(other, b.cfg.HolderPlace) || time.Now().After(deadline) {
			err = storeInUse(strings.TrimPrefix(heldKey, b.prefix), other, b.cfg.lockTTL())
			break
		}
		// Most likely this coordinator's own key from before a crash: its
		// lease runs out within the TTL.
		b.log.Info("waiting for the store key held by the same host and data directory to lapse", "key", heldKey, "holder", other)
		b.cli.Revoke(ctx, lease.ID)
		cancel()
		select {
		case <-time.After(500 * time.Millisecond):
		case <-b.ctx.Done():
			return nil, b.ctx.Err()
		}
		ctx, cancel = b.rctx()
	}
	if err == nil {
		var alive <-chan *clientv3.LeaseKeepAliveResponse
		if alive, err = b.cli.KeepAlive(b.ctx, lease.ID); err == nil {
			b.fence.Store(&etcdFence{key: key, rev: resp.Header.Revision, lease: lease.ID})
			return alive, nil
		}
	}
	rctx, rcancel := b.rctx()
	b.cli.Revoke(rctx, lease.ID)
	rcancel()
	return nil, etcdError(err)
}

// describeHolder is what a refusal says of the key's holder: a member
// record's instance and process, or the lock's text.
func describeHolder(v []byte) string {
	var rec memberRecord
	if json.Unmarshal(v, &rec) == nil && rec.Instance != "" {
		s := "instance " + rec.Instance
		if rec.Process != "" {
			s += " (" + rec.Process + ")"
		}
		return s + " since " + time.Unix(rec.Started, 0).UTC().Format(time.RFC3339)
	}
	return string(v)
}

// announce writes the addresses this member serves into its record.
func (b *etcdKV) announce(addrs []string) error {
	if b.member == nil {
		return nil
	}
	b.member.mu.Lock()
	b.member.rec.Addrs = addrs
	b.member.mu.Unlock()
	f := b.fence.Load()
	ctx, cancel := b.rctx()
	defer cancel()
	resp, err := b.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(f.key), "=", f.rev)).
		Then(clientv3.OpPut(f.key, b.member.value(), clientv3.WithLease(f.lease))).Commit()
	if err != nil {
		return etcdError(err)
	}
	if !resp.Succeeded {
		// A new registration writes the record with these addresses.
		return errStoreLockLost
	}
	return nil
}

// watch follows the keys under prefix from revision after+1 until close:
// fn gets each etcd watch response's events in order, on this goroutine.
// A watch that fell behind etcd's compaction reads the prefix afresh and
// hands it over as a reset batch; one cut off (no leader, member gone)
// starts again from the revision after the last it handed over.
func (b *etcdKV) watch(prefix []byte, after int64, fn func(watchBatch)) {
	p := b.prefix + string(prefix)
	mark := b.newMark(p, after)
	b.wg.Go(func() {
		next := after + 1
		for b.ctx.Err() == nil {
			ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(b.ctx))
			wch := b.cli.Watch(ctx, p, clientv3.WithPrefix(), clientv3.WithRev(next))
			for resp := range wch {
				if resp.CompactRevision != 0 {
					b.log.Warn("a store watch fell behind etcd's compaction: reading its keys again", "prefix", p, "from", next, "compacted", resp.CompactRevision)
					rev, ok := b.resync(p, fn)
					if ok {
						next = rev + 1
						mark.advance(rev)
					}
					break
				}
				if err := resp.Err(); err != nil {
					if b.ctx.Err() == nil {
						b.log.Warn("a store watch ended; starting again", "prefix", p, logError, err)
					}
					break
				}
				if resp.IsProgressNotify() {
					// Every change up to the header's revision has been
					// handed over (catchUp asked, or etcd's own notice).
					mark.advance(resp.Header.GetRevision())
					continue
				}
				if len(resp.Events) == 0 {
					continue
				}
				batch := watchBatch{events: make([]storeEvent, 0, len(resp.Events))}
				for _, ev := range resp.Events {
					k := string(ev.Kv.Key)
					if k == b.lockKey {
						continue
					}
					e := storeEvent{key: k[len(b.prefix):], rev: ev.Kv.ModRevision}
					if ev.Type == clientv3.EventTypePut {
						e.value = ev.Kv.Value
						if e.value == nil {
							e.value = []byte{}
						}
					}
					batch.events = append(batch.events, e)
					batch.rev = ev.Kv.ModRevision
				}
				next = batch.rev + 1
				fn(batch)
				mark.advance(batch.rev)
			}
			cancel()
			select {
			case <-b.ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	})
}

// resync reads every key under p at one revision and hands them to fn as
// a reset batch; false if the read failed (the watch tries again).
func (b *etcdKV) resync(p string, fn func(watchBatch)) (int64, bool) {
	t := &etcdTxn{b: b, readOnly: true}
	batch := watchBatch{reset: true}
	err := t.scan([]byte(p[len(b.prefix):]), nil, false, func(k, v []byte) (bool, error) {
		batch.events = append(batch.events, storeEvent{key: string(k), value: append([]byte{}, v...), rev: t.rev})
		return true, nil
	})
	if err != nil {
		b.log.Warn("reading a watched prefix again", "prefix", p, logError, err)
		return 0, false
	}
	if t.rev == 0 {
		return 0, false
	}
	batch.rev = t.rev
	fn(batch)
	return t.rev, true
}

// revision is the revision this transaction reads at (a cheap read fixes
// it when nothing was read yet).
func (t *etcdTxn) revision() (int64, error) {
	if t.rev == 0 {
		if _, err := t.range_(t.b.prefix+membersPrefix, clientv3.WithCountOnly()); err != nil {
			return 0, err
		}
	}
	return t.rev, nil
}
