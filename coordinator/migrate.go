package coordinator

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"log/slog"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// Moving a site's records from its Badger directory to etcd
// (`jumpmesh coordinator migrate`).

// MigrateConfig names the site to move and where to.
type MigrateConfig struct {
	// DataDir is the site's data directory (site.key, site.json, db/);
	// its coordinator must be stopped.
	DataDir string
	// To is the destination, an etcd store (its prefix defaults to the
	// site's).
	To StoreConfig
	// Force replaces what the destination holds; otherwise a non-empty
	// destination is refused with CodeStoreNotEmpty.
	Force  bool
	Logger *slog.Logger
}

// MigrateResult is what was copied and checked.
type MigrateResult struct {
	Records int
	Bytes   int64
	// Prefix is the etcd key prefix the records went under.
	Prefix string
	// Digest is the SHA-256 of every key and value, in key order, read
	// back from the destination: equal to the source's.
	Digest string
	// Replaced counts destination records removed by Force.
	Replaced int
}

// migrateBatch bounds one destination transaction: well inside etcd's 128
// operations and 1.5 MiB.
const (
	migrateBatchOps   = 100
	migrateBatchBytes = 512 << 10
)

// Migrate copies every record of the site in cfg.DataDir to cfg.To, then
// reads both back and compares their count and digest.
func Migrate(cfg MigrateConfig) (*MigrateResult, error) {
	if !cfg.To.IsEtcd() {
		return nil, invalidStoref("migrate moves a site to etcd: give --to etcd://HOST:2379")
	}
	site, err := OpenSite(cfg.DataDir)
	if err != nil {
		return nil, err
	}
	src, err := OpenStore(site.StorePath(), StoreOptions{Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("%w (is this site's coordinator still running? stop it first)", err)
	}
	defer src.Close()
	ec, err := cfg.To.etcdConfig(site.ID.String())
	if err != nil {
		return nil, err
	}
	// The lock keeps a coordinator on the destination from starting
	// while records arrive.
	ec.Lock = true
	ec.Holder = "coordinator migrate from " + cfg.DataDir
	ec.Logger = cfg.Logger
	dst, err := OpenEtcdStore(ec)
	if err != nil {
		return nil, err
	}
	defer dst.Close()
	res, err := copyStore(src, dst, cfg.Force)
	if err != nil {
		return nil, err
	}
	res.Prefix = ec.Prefix
	return res, nil
}

// copyStore copies every key of src to dst and verifies the copy.
func copyStore(src, dst *Store, force bool) (*MigrateResult, error) {
	res := &MigrateResult{}
	existing, _, err := storeDigest(dst)
	if err != nil {
		return nil, fmt.Errorf("reading the destination: %w", err)
	}
	if existing > 0 {
		if !force {
			return nil, catalog.Errorf(catalog.CodeStoreNotEmpty, "(it holds %d records)", existing)
		}
		if res.Replaced, err = clearStore(dst); err != nil {
			return nil, fmt.Errorf("clearing the destination: %w", err)
		}
	}
	type kv struct{ k, v []byte }
	var batch []kv
	size := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := dst.Update(func(tx *Tx) error {
			for _, e := range batch {
				if err := tx.kv.set(e.k, e.v); err != nil {
					return err
				}
			}
			return nil
		})
		batch, size = batch[:0], 0
		return err
	}
	err = src.View(func(tx *Tx) error {
		return tx.kv.scan(nil, nil, false, func(k, v []byte) (bool, error) {
			if len(batch) == migrateBatchOps || size+len(k)+len(v) > migrateBatchBytes {
				if err := flush(); err != nil {
					return false, fmt.Errorf("writing to the destination: %w", err)
				}
			}
			batch = append(batch, kv{bytes.Clone(k), bytes.Clone(v)})
			size += len(k) + len(v)
			res.Records++
			res.Bytes += int64(len(k) + len(v))
			return true, nil
		})
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return nil, err
	}
	n, digest, err := storeDigest(src)
	if err != nil {
		return nil, err
	}
	m, copied, err := storeDigest(dst)
	if err != nil {
		return nil, fmt.Errorf("reading the copy back: %w", err)
	}
	if n != m || digest != copied || n != res.Records {
		return nil, fmt.Errorf("the copy differs from the source: %d records (digest %s) against %d (%s); was the source written during the copy?", m, copied, n, digest)
	}
	res.Digest = digest
	return res, nil
}

// storeDigest counts a store's keys and hashes every key and value.
func storeDigest(st *Store) (int, string, error) {
	h := sha256.New()
	n := 0
	err := st.View(func(tx *Tx) error {
		return tx.kv.scan(nil, nil, false, func(k, v []byte) (bool, error) {
			n++
			h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(k))))
			h.Write(k)
			h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(v))))
			h.Write(v)
			return true, nil
		})
	})
	return n, hex.EncodeToString(h.Sum(nil)), err
}

// clearStore deletes every key, in batches.
func clearStore(st *Store) (int, error) {
	total := 0
	for {
		var keys [][]byte
		err := st.View(func(tx *Tx) error {
			return tx.kv.scan(nil, nil, false, func(k, _ []byte) (bool, error) {
				keys = append(keys, bytes.Clone(k))
				return len(keys) < migrateBatchOps, nil
			})
		})
		if err != nil || len(keys) == 0 {
			return total, err
		}
		err = st.Update(func(tx *Tx) error {
			for _, k := range keys {
				if err := tx.kv.delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += len(keys)
	}
}
