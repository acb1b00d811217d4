package coordinator

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// etcdKV keeps the store's records in etcd under a prefix of their own
// (/jumpmesh/<site id>/ by default), so that a site's state outlives any one
// coordinator's disk and, in a later part, several coordinators can serve
// one site.
//
// Transactions are optimistic, as Badger's are: every read of a transaction
// happens at one etcd revision (the first read's), and the commit is one
// etcd Txn whose compares check that nothing read has changed since:
//
//   - a key read with get: its mod revision is unchanged (0: still absent);
//   - a prefix read with scan: no key under it was written after the
//     revision (a range compare), and a key the scan returned that the
//     transaction writes is still at the revision it was read at, so a
//     record deleted meanwhile is not written back;
//   - a key made with create: it does not exist.
//
// A failed compare is ErrStoreConflict and Store.Update runs the function
// again, up to the same bound as on Badger. A committed Txn is on a quorum
// of members' disks before etcd answers: an acknowledged write survives.
//
// What the compares do not see is a key that a scan returned, that another
// coordinator deleted, and that this transaction does not write (a range
// compare only checks the keys that still exist); Badger would call that a
// conflict. No transaction of the coordinator decides on the presence of a
// listed record it does not write back.
//
// etcd bounds a Txn (128 operations and compares, 1.5 MiB by default): a
// transaction that writes more is refused with an error before it is sent,
// compares past the bound are merged into coarser range compares, and
// scans read in pages.
type etcdKV struct {
	cli    *clientv3.Client
	prefix string
	cfg    EtcdConfig
	log    *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc

	// lockKey is the exclusive lock's key (coordinator migrate); fence
	// is what every commit is checked against: this store's member key
	// c/<instance> (or the lock key) at the revision it created it, and
	// the lease that key is held by (store_etcd_lease.go). nil when the
	// store neither registered nor locked.
	lockKey string
	fence   atomic.Pointer[etcdFence]
	member  *etcdMember // nil unless cfg.Instance
	// lost tells keepLease that a commit found the fence key gone.
	lost chan *etcdFence
	// marks are where each watch stands, by prefix (store_etcd_catchup.go).
	marksMu sync.Mutex
	marks   map[string][]*watchMark
	// catchUpWaiting, when set (tests only), runs each time catchUp
	// starts waiting for its watch.
	catchUpWaiting atomic.Pointer[func()]
	wg             sync.WaitGroup
	closeOnce      sync.Once
	closeErr       error
}

// EtcdConfig opens a store on etcd. Zero values are defaults.
type EtcdConfig struct {
	// Endpoints are host:port (or http(s)://host:port) of etcd members.
	Endpoints []string
	// Prefix is where the site's records live; it always ends in "/".
	// Default: /jumpmesh/<site id>/ (set by the caller that knows the site).
	Prefix string
	// TLS: CACert verifies the members' certificates; Cert and Key are this
	// client's. TLS is used when any is set, or when TLS is true (system
	// roots).
	CACert, Cert, Key string
	TLS               bool
	// InsecureSkipVerify accepts any server certificate (tests, labs).
	InsecureSkipVerify bool
	// Username and Password authenticate to etcd (etcd's auth).
	Username, Password string
	// DialTimeout bounds connecting and the first request (5 s).
	DialTimeout time.Duration
	// RequestTimeout bounds each request (10 s).
	RequestTimeout time.Duration
	// Instance registers this store as the site's member c/<Instance>, a
	// key held by a lease of LockTTL (10 s) kept alive until close; every
	// commit is fenced on that key (store_etcd_lease.go). Several members
	// share a prefix; a second store with the same Instance while the
	// first lives is refused with CodeStoreInUse. Holder describes the
	// process (pid, host, data directory) in the member record.
	Instance string
	// Lock takes the prefix's exclusive lock instead (coordinator
	// migrate): refused while any member or another lock holder lives,
	// and no member registers while it is held. Holder names it.
	Lock    bool
	LockTTL time.Duration
	Holder  string
	// HolderPlace, when the live member of the same Instance (or the
	// lock's holder) says it too (the same host and data directory: most
	// likely this coordinator before a crash), makes the store wait up to
	// LockTTL for that key to lapse instead of refusing at once.
	HolderPlace string
	// MaxTxnOps and MaxRequestBytes are the members' --max-txn-ops and
	// --max-request-bytes (128 and 1.5 MiB).
	MaxTxnOps       int
	MaxRequestBytes int
	Logger          *slog.Logger
}

func (c EtcdConfig) dialTimeout() time.Duration { return orDefault(c.DialTimeout, 5*time.Second) }
func (c EtcdConfig) requestTimeout() time.Duration {
	return orDefault(c.RequestTimeout, 10*time.Second)
}
func (c EtcdConfig) lockTTL() time.Duration { return orDefault(c.LockTTL, 10*time.Second) }
func (c EtcdConfig) maxTxnOps() int {
	if c.MaxTxnOps > 0 {
		return c.MaxTxnOps
	}
	return 128
}
func (c EtcdConfig) maxRequestBytes() int {
	if c.MaxRequestBytes > 0 {
		return c.MaxRequestBytes
	}
	return 3 << 19 // 1.5 MiB
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// DefaultEtcdPrefix is where a site's records live in etcd by default.
func DefaultEtcdPrefix(siteID string) string { return "/jumpmesh/" + siteID + "/" }

// lockKeyName is the coordinator lock's key under the prefix; no record key
// starts with it, and scans skip it.
const lockKeyName = "coordinator-lock"

// etcdScanPage is how many keys one scan request reads.
const etcdScanPage = 256

// OpenEtcdStore connects to etcd, checks that it answers (and, with
// cfg.Lock, takes the prefix's coordinator lock). Errors carry the catalog
// codes store_unreachable, store_tls, store_auth and store_in_use.
func OpenEtcdStore(cfg EtcdConfig) (*Store, error) {
	kv, err := openEtcd(cfg)
	if err != nil {
		return nil, err
	}
	return &Store{kv: kv, instance: cfg.Instance}, nil
}

func openEtcd(cfg EtcdConfig) (_ *etcdKV, err error) {
	if len(cfg.Endpoints) == 0 {
		return nil, invalidStoref("no etcd endpoint given")
	}
	if cfg.Prefix == "" {
		return nil, invalidStoref("no etcd key prefix given")
	}
	if !strings.HasSuffix(cfg.Prefix, "/") {
		// "/jumpmesh/a" must not see "/jumpmesh/ab/…".
		cfg.Prefix += "/"
	}
	tlsCfg, err := cfg.tlsConfig()
	if err != nil {
		return nil, err
	}
	endpoints := make([]string, len(cfg.Endpoints))
	for i, e := range cfg.Endpoints {
		if !strings.Contains(e, "://") {
			if tlsCfg != nil {
				e = "https://" + e
			} else {
				e = "http://" + e
			}
		}
		endpoints[i] = e
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: endpoints, DialTimeout: cfg.dialTimeout(), TLS: tlsCfg,
		Username: cfg.Username, Password: cfg.Password, Logger: zap.NewNop(),
		// Requests larger than the server takes fail there with a clear
		// error; the client must accept a page of big records.
		MaxCallSendMsgSize: 2 * cfg.maxRequestBytes(),
	})
	if err != nil {
		return nil, etcdOpenError(cfg.Endpoints, err)
	}
	b := &etcdKV{cli: cli, prefix: cfg.Prefix, cfg: cfg, log: log, lockKey: cfg.Prefix + lockKeyName, lost: make(chan *etcdFence, 1)}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			b.close()
		}
	}()
	// clientv3.New does not wait for a connection: one read proves that a
	// member answers, with these credentials.
	ctx, cancel := context.WithTimeout(b.ctx, cfg.dialTimeout())
	_, err = cli.Get(ctx, b.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	cancel()
	if err != nil {
		// gRPC says only "deadline exceeded" when no connection came up:
		// find out why from the endpoints themselves.
		if cause := diagnoseEndpoints(endpoints, tlsCfg, cfg.dialTimeout()); cause != nil {
			return nil, cause
		}
		return nil, etcdOpenError(cfg.Endpoints, err)
	}
	switch {
	case cfg.Lock:
		if err := b.takeLock(); err != nil {
			return nil, err
		}
	case cfg.Instance != "":
		if err := b.register(); err != nil {
			return nil, err
		}
	}
	return b, nil
}

func (b *etcdKV) rctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(b.ctx, b.cfg.requestTimeout())
}

func (b *etcdKV) close() error {
	b.closeOnce.Do(func() {
		b.cancel()
		b.wg.Wait()
		if f := b.fence.Load(); f != nil {
			// Give the member key (or the lock) back now rather than after
			// its TTL: its presence keys go with it.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_, err := b.cli.Revoke(ctx, f.lease)
			cancel()
			if err != nil {
				b.log.Warn("revoking the store's lease", "key", f.key, logError, err)
			}
		}
		b.closeErr = b.cli.Close()
	})
	return b.closeErr
}

func (b *etcdKV) view(fn func(kvTxn) error) error {
	return fn(&etcdTxn{b: b, readOnly: true})
}

func (b *etcdKV) update(fn func(kvTxn) error, beforeCommit func()) error {
	t := &etcdTxn{b: b}
	if err := fn(t); err != nil {
		return err
	}
	if beforeCommit != nil {
		beforeCommit()
	}
	return t.commit()
}

// etcdTxn is one optimistic transaction (see etcdKV).
type etcdTxn struct {
	b        *etcdKV
	readOnly bool
	// rev is the revision every read sees; 0 until the first read.
	rev int64
	// reads: full key → mod revision at rev (0: absent), for keys read
	// with get or returned by a scan.
	reads map[string]int64
	// got marks the keys read with get (their compare is always sent).
	got map[string]bool
	// ranges are the full prefixes scanned.
	ranges map[string]bool
	// writes: full key → value, nil for a delete.
	writes  map[string][]byte
	creates map[string]bool
	// leased marks writes put under the store's lease (setLeased).
	leased map[string]bool
	// commitRev is the revision the commit made.
	commitRev int64
}

func (t *etcdTxn) committed() int64 { return t.commitRev }

var errReadOnly = errors.New("write in a read-only transaction")

func (t *etcdTxn) full(key []byte) string { return t.b.prefix + string(key) }

func (t *etcdTxn) readOpts(opts ...clientv3.OpOption) []clientv3.OpOption {
	if t.rev > 0 {
		opts = append(opts, clientv3.WithRev(t.rev))
	}
	return opts
}

func (t *etcdTxn) range_(key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	ctx, cancel := t.b.rctx()
	defer cancel()
	resp, err := t.b.cli.Get(ctx, key, t.readOpts(opts...)...)
	if errors.Is(err, rpctypes.ErrCompacted) {
		// The revision this transaction reads at is gone: start again.
		return nil, fmt.Errorf("%w: %w", ErrStoreConflict, err)
	}
	if err != nil {
		return nil, etcdError(err)
	}
	if t.rev == 0 {
		t.rev = resp.Header.Revision
	}
	return resp, nil
}

func (t *etcdTxn) note(key string, modRev int64) {
	if t.reads == nil {
		t.reads = map[string]int64{}
	}
	if _, seen := t.reads[key]; !seen {
		t.reads[key] = modRev
	}
}

func (t *etcdTxn) get(key []byte) ([]byte, bool, error) {
	k := t.full(key)
	if v, ok := t.writes[k]; ok {
		return bytes.Clone(v), v != nil, nil
	}
	resp, err := t.range_(k)
	if err != nil {
		return nil, false, err
	}
	if t.got == nil {
		t.got = map[string]bool{}
	}
	t.got[k] = true
	if len(resp.Kvs) == 0 {
		t.note(k, 0)
		return nil, false, nil
	}
	t.note(k, resp.Kvs[0].ModRevision)
	return resp.Kvs[0].Value, true, nil
}

func (t *etcdTxn) set(key, value []byte) error {
	if t.readOnly {
		return errReadOnly
	}
	if t.writes == nil {
		t.writes = map[string][]byte{}
	}
	if value == nil {
		value = []byte{}
	}
	t.writes[t.full(key)] = bytes.Clone(value)
	delete(t.leased, t.full(key))
	return nil
}

func (t *etcdTxn) delete(key []byte) error {
	if t.readOnly {
		return errReadOnly
	}
	if t.writes == nil {
		t.writes = map[string][]byte{}
	}
	t.writes[t.full(key)] = nil
	delete(t.leased, t.full(key))
	return nil
}

// setLeased sets key under this store's lease: etcd deletes it when the
// lease ends (close, or the coordinator's death).
func (t *etcdTxn) setLeased(key, value []byte) error {
	if err := t.set(key, value); err != nil {
		return err
	}
	if t.leased == nil {
		t.leased = map[string]bool{}
	}
	t.leased[t.full(key)] = true
	return nil
}

func (t *etcdTxn) create(key, value []byte) error {
	if err := t.set(key, value); err != nil {
		return err
	}
	if t.creates == nil {
		t.creates = map[string]bool{}
	}
	t.creates[t.full(key)] = true
	return nil
}

func (t *etcdTxn) scan(prefix, start []byte, reverse bool, fn func(k, v []byte) (bool, error)) error {
	p := t.full(prefix)
	end := clientv3.GetPrefixRangeEnd(p)
	if t.ranges == nil {
		t.ranges = map[string]bool{}
	}
	t.ranges[p] = true
	// The scan's bounds [lo, hi): a start outside the prefix means its end.
	lo, hi := p, end
	if start != nil && bytes.HasPrefix(start, prefix) {
		if reverse {
			hi = t.full(start) + "\x00"
		} else {
			lo = t.full(start)
		}
	}
	// This transaction's own writes in the bounds, in scan order.
	var pending []string
	for k := range t.writes {
		if k >= lo && k < hi {
			pending = append(pending, k)
		}
	}
	sort.Strings(pending)
	if reverse {
		slicesReverse(pending)
	}
	before := func(a, b string) bool { return a < b != reverse }
	emit := func(k string, v []byte) (bool, error) {
		if k == t.b.lockKey {
			return true, nil
		}
		return fn([]byte(k[len(t.b.prefix):]), v)
	}
	// flush hands fn the pending sets that come before k ("" : all).
	flush := func(k string) (bool, error) {
		for len(pending) > 0 && (k == "" || before(pending[0], k)) {
			pk := pending[0]
			pending = pending[1:]
			if v := t.writes[pk]; v != nil {
				if more, err := emit(pk, v); err != nil || !more {
					return false, err
				}
			}
		}
		return true, nil
	}
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(hi), clientv3.WithLimit(etcdScanPage)}
		if reverse {
			opts = append(opts, clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
		} else {
			opts = append(opts, clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
		}
		resp, err := t.range_(lo, opts...)
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			k := string(kv.Key)
			t.note(k, kv.ModRevision)
			if more, err := flush(k); err != nil || !more {
				return err
			}
			v := kv.Value
			if w, mine := t.writes[k]; mine {
				if len(pending) > 0 && pending[0] == k {
					pending = pending[1:]
				}
				if w == nil {
					continue
				}
				v = w
			}
			if more, err := emit(k, v); err != nil || !more {
				return err
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			break
		}
		last := string(resp.Kvs[len(resp.Kvs)-1].Key)
		if reverse {
			hi = last
		} else {
			lo = last + "\x00"
		}
	}
	_, err := flush("")
	return err
}

func slicesReverse(s []string) {
	for i, j := 0, len(s)-1; i < j; i, j = i+1, j-1 {
		s[i], s[j] = s[j], s[i]
	}
}

// errStoreLockLost: this coordinator's member key (or lock) is gone (its
// lease ran out: etcd was unreachable for longer than its TTL): it writes
// no more until it has registered again, since another process of the
// same instance may have registered meanwhile.
var errStoreLockLost = errors.New("this coordinator's store lease was lost (etcd unreachable for longer than its TTL?); writes fail until it registers again")

func (t *etcdTxn) commit() error {
	if len(t.writes) == 0 {
		return nil
	}
	b := t.b
	ops := make([]clientv3.Op, 0, len(t.writes))
	size := 0
	keys := make([]string, 0, len(t.writes))
	for k := range t.writes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := t.writes[k]
		if v == nil {
			ops = append(ops, clientv3.OpDelete(k))
		} else {
			ops = append(ops, clientv3.OpPut(k, string(v)))
		}
		size += len(k) + len(v) + 16
	}
	cmps := t.compares()
	if len(ops) > b.cfg.maxTxnOps() || len(cmps) > b.cfg.maxTxnOps() || size > b.cfg.maxRequestBytes()-64<<10 {
		return fmt.Errorf("a store transaction of %d writes (%d bytes, %d checks) exceeds etcd's bounds (%d operations, %d bytes)",
			len(ops), size, len(cmps), b.cfg.maxTxnOps(), b.cfg.maxRequestBytes())
	}
	var orElse []clientv3.Op
	fence := b.fence.Load()
	if fence != nil {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(fence.key), "=", fence.rev))
		orElse = append(orElse, clientv3.OpGet(fence.key))
		for i, k := range keys {
			if t.leased[k] && t.writes[k] != nil {
				ops[i] = clientv3.OpPut(k, string(t.writes[k]), clientv3.WithLease(fence.lease))
			}
		}
	} else if len(t.leased) > 0 {
		return errors.New("a leased write in a store that holds no lease")
	}
	ctx, cancel := b.rctx()
	defer cancel()
	resp, err := b.cli.Txn(ctx).If(cmps...).Then(ops...).Else(orElse...).Commit()
	if err != nil {
		// Not knowing whether a Txn committed is not a conflict: the
		// caller reports the error, and the next read shows the truth.
		return etcdError(err)
	}
	if resp.Succeeded {
		t.commitRev = resp.Header.Revision
		return nil
	}
	if fence != nil {
		if r := resp.Responses[0].GetResponseRange(); r == nil || len(r.Kvs) == 0 || r.Kvs[0].CreateRevision != fence.rev {
			if b.fence.Load() == fence { // not registered again meanwhile
				select {
				case b.lost <- fence: // keepLease registers again
				default:
				}
			}
			return errStoreLockLost
		}
	}
	return fmt.Errorf("%w (etcd revision %d)", ErrStoreConflict, t.rev)
}

// compares are the checks of what the transaction read (see etcdKV),
// merged into coarser range compares when there are more than a Txn takes.
func (t *etcdTxn) compares() []clientv3.Cmp {
	var cmps []clientv3.Cmp
	for k := range t.creates {
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(k), "=", 0))
	}
	covered := func(k string) bool {
		for p := range t.ranges {
			if strings.HasPrefix(k, p) {
				return true
			}
		}
		return false
	}
	// Keys whose own revision is checked: every get, and every scanned key
	// this transaction writes.
	var keyed []string
	for k := range t.reads {
		_, written := t.writes[k]
		if t.got[k] || (written && covered(k)) {
			keyed = append(keyed, k)
		}
	}
	ranges := make(map[string]bool, len(t.ranges))
	for p := range t.ranges {
		ranges[p] = true
	}
	budget := t.b.cfg.maxTxnOps() - len(cmps) - 1 // one for the lock
	if len(keyed)+len(ranges) > budget {
		// Coarser: each key's first segment ("p/", "settings") as a range.
		for _, k := range keyed {
			rest := k[len(t.b.prefix):]
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				rest = rest[:i+1]
			}
			ranges[t.b.prefix+rest] = true
		}
		keyed = nil
		if len(ranges) > budget {
			ranges = map[string]bool{t.b.prefix: true}
		}
	}
	for _, k := range keyed {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(k), "=", t.reads[k]))
	}
	if t.rev > 0 {
		for p := range ranges {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(p).WithPrefix(), "<", t.rev+1))
		}
	}
	return cmps
}
