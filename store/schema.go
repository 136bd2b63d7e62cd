package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Bucket names; see doc.go for the key formats.
const (
	bucketMeta      = "meta"
	bucketAgent     = "agent"
	bucketBoots     = "boots"
	bucketMembers   = "members"
	bucketEvents    = "events"
	bucketAcceptor  = "acceptor"
	bucketDecisions = "decisions"
	bucketView      = "view"
	bucketJobs      = "jobs"
	bucketModels    = "models"
)

// Keys in the meta bucket (store-internal; agent metadata lives in "agent").
const (
	keySchema      = "schema"       // uint64 big-endian
	keyEventsFloor = "events.floor" // uint64 big-endian: highest LTime trimmed
)

// Keys in single-value buckets.
const (
	keyAcceptor = "state"
	keyView     = "current" // uint64 big-endian epoch ‖ view bytes
)

const eventKeyLen = 8 + 32 // LTime ‖ sha256

// allBuckets are the buckets of schema version 1.
var allBuckets = [...]string{
	bucketMeta, bucketAgent, bucketBoots, bucketMembers, bucketEvents,
	bucketAcceptor, bucketDecisions, bucketView, bucketJobs, bucketModels,
}

// checkSchema checks the layout of an existing database. fresh reports a
// bbolt file with no buckets at all (bbolt initialised it, but our first
// transaction never committed): there is nothing in it to lose.
func checkSchema(tx *bolt.Tx, path string) (fresh bool, err error) {
	corrupt := func(format string, args ...any) error {
		return errCorrupt(path, fmt.Errorf(format, args...))
	}
	var names []string
	if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
		names = append(names, string(name))
		return nil
	}); err != nil {
		return false, corrupt("list buckets: %v", err)
	}
	if len(names) == 0 {
		return true, nil
	}
	meta := tx.Bucket([]byte(bucketMeta))
	if meta == nil {
		return false, corrupt("no %q bucket (not a vigil store? buckets: %q)", bucketMeta, names)
	}
	raw := meta.Get([]byte(keySchema))
	if raw == nil {
		return false, corrupt("no schema version in the %q bucket", bucketMeta)
	}
	if len(raw) != 8 {
		return false, corrupt("schema version is %d bytes, want 8", len(raw))
	}
	v := binary.BigEndian.Uint64(raw)
	switch {
	case v > SchemaVersion:
		return false, errNewer(path, v)
	case v == 0:
		return false, corrupt("schema version 0")
	}
	for _, name := range allBuckets {
		if tx.Bucket([]byte(name)) == nil {
			return false, corrupt("missing bucket %q", name)
		}
	}
	if f := meta.Get([]byte(keyEventsFloor)); f != nil && len(f) != 8 {
		return false, corrupt("events floor is %d bytes, want 8", len(f))
	}
	for _, c := range []struct {
		bucket string
		keyLen int
	}{
		{bucketBoots, 8}, {bucketMembers, 8}, {bucketDecisions, 8}, {bucketEvents, eventKeyLen},
	} {
		b := tx.Bucket([]byte(c.bucket))
		n := uint64(0)
		err := b.ForEach(func(k, _ []byte) error {
			if len(k) != c.keyLen {
				return fmt.Errorf("key %x is %d bytes, want %d", k, len(k), c.keyLen)
			}
			n++
			return nil
		})
		if err != nil {
			return false, corrupt("bucket %q: %v", c.bucket, err)
		}
		if c.bucket == bucketEvents && n != b.Sequence() {
			return false, corrupt("bucket %q holds %d keys, its count says %d", c.bucket, n, b.Sequence())
		}
	}
	if v := tx.Bucket([]byte(bucketView)).Get([]byte(keyView)); v != nil && len(v) < 8 {
		return false, corrupt("saved view is %d bytes, want at least 8", len(v))
	}
	return false, nil
}

// initSchema creates the buckets of a fresh file, or re-checks an existing
// one (cheap: the full check ran read-only before).
func initSchema(tx *bolt.Tx, path string) error {
	names := 0
	_ = tx.ForEach(func([]byte, *bolt.Bucket) error { names++; return nil })
	if names > 0 {
		meta := tx.Bucket([]byte(bucketMeta))
		if meta == nil {
			return errCorrupt(path, errors.New("no meta bucket (not a vigil store?)"))
		}
		raw := meta.Get([]byte(keySchema))
		if len(raw) != 8 {
			return errCorrupt(path, errors.New("no valid schema version"))
		}
		if v := binary.BigEndian.Uint64(raw); v > SchemaVersion {
			return errNewer(path, v)
		}
		// Version 1 is the only one; a future version migrates here.
	}
	for _, name := range allBuckets {
		if _, err := tx.CreateBucketIfNotExists([]byte(name)); err != nil {
			return fmt.Errorf("create bucket %q: %w", name, err)
		}
	}
	if names == 0 {
		return tx.Bucket([]byte(bucketMeta)).Put([]byte(keySchema), u64(SchemaVersion))
	}
	return nil
}

func u64(v uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], v)
	return b[:]
}
