package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Tx is one transaction, handed to the callback of Store.Batch. Its
// methods behave like the Store methods of the same name but commit
// together. Byte slices it returns are copies, valid after the
// transaction.
type Tx struct {
	tx *bolt.Tx
	s  *Store
}

func (t *Tx) bucket(name string) *bolt.Bucket {
	return t.tx.Bucket([]byte(name))
}

func (t *Tx) hook() error {
	if t.s.failWrite != nil {
		return t.s.failWrite()
	}
	return nil
}

func (t *Tx) put(b *bolt.Bucket, k, v []byte) error {
	if err := t.hook(); err != nil {
		return err
	}
	return b.Put(k, v)
}

func (t *Tx) del(b *bolt.Bucket, k []byte) error {
	if err := t.hook(); err != nil {
		return err
	}
	return b.Delete(k)
}

func (t *Tx) setSeq(b *bolt.Bucket, v uint64) error {
	if err := t.hook(); err != nil {
		return err
	}
	return b.SetSequence(v)
}

func clone(v []byte) []byte {
	if v == nil {
		return nil
	}
	return append([]byte{}, v...)
}

// appendSeq stores v under the bucket's next sequence number and deletes
// the oldest keys so that at most keep remain.
func (t *Tx) appendSeq(b *bolt.Bucket, v []byte, keep int) error {
	seq := b.Sequence() + 1
	if err := t.setSeq(b, seq); err != nil {
		return err
	}
	if err := t.put(b, u64(seq), v); err != nil {
		return err
	}
	if seq <= uint64(keep) {
		return nil
	}
	cutoff := seq - uint64(keep) // delete keys <= cutoff
	var old [][]byte
	c := b.Cursor()
	for k, _ := c.First(); k != nil && binary.BigEndian.Uint64(k) <= cutoff; k, _ = c.Next() {
		old = append(old, clone(k))
	}
	for _, k := range old {
		if err := t.del(b, k); err != nil {
			return err
		}
	}
	return nil
}

// newestSeq decodes up to limit values, newest first, that keep accepts.
func newestSeq[T any](b *bolt.Bucket, limit int, keep func(*T) bool) ([]T, error) {
	var out []T
	c := b.Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		if limit > 0 && len(out) >= limit {
			break
		}
		var r T
		if err := json.Unmarshal(v, &r); err != nil {
			return nil, fmt.Errorf("decode %s %x: %w", b.Tx().DB().Path(), k, err)
		}
		if keep == nil || keep(&r) {
			out = append(out, r)
		}
	}
	return out, nil
}

// RecordBoot appends b to the boot history.
func (t *Tx) RecordBoot(b Boot) error {
	v, err := encodeJSON(b)
	if err != nil {
		return fmt.Errorf("encode boot: %w", err)
	}
	return t.appendSeq(t.bucket(bucketBoots), v, t.s.opts.MaxBoots)
}

// Boots returns up to limit boots, newest first; limit <= 0 means all.
func (t *Tx) Boots(limit int) ([]Boot, error) {
	return newestSeq[Boot](t.bucket(bucketBoots), limit, nil)
}

// AppendMember appends r to the member history, trimming the oldest
// records beyond Options.MaxMembers in the same transaction.
func (t *Tx) AppendMember(r MemberRecord) error {
	v, err := encodeJSON(r)
	if err != nil {
		return fmt.Errorf("encode member record: %w", err)
	}
	return t.appendSeq(t.bucket(bucketMembers), v, t.s.opts.MaxMembers)
}

// MemberHistory returns up to limit records for node ("" = every node),
// newest (last appended) first; limit <= 0 means all.
func (t *Tx) MemberHistory(node string, limit int) ([]MemberRecord, error) {
	var keep func(*MemberRecord) bool
	if node != "" {
		keep = func(r *MemberRecord) bool { return r.Node == node }
	}
	return newestSeq(t.bucket(bucketMembers), limit, keep)
}

func (t *Tx) eventsFloor() (uint64, bool) {
	v := t.bucket(bucketMeta).Get([]byte(keyEventsFloor))
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

func hasKey(b *bolt.Bucket, key []byte) bool {
	k, _ := b.Cursor().Seek(key)
	return k != nil && bytes.Equal(k, key)
}

// SeenEvent reports whether k was marked, or is at or below the Lamport
// time of events already trimmed (too old to tell; treated as seen).
func (t *Tx) SeenEvent(k EventKey) (bool, error) {
	if hasKey(t.bucket(bucketEvents), k.key()) {
		return true, nil
	}
	if floor, ok := t.eventsFloor(); ok && k.LTime <= floor {
		return true, nil
	}
	return false, nil
}

// MarkEvent records k and reports whether this is the first time: check
// and set happen in one write transaction. An event at or below the
// Lamport time of already-trimmed events is reported as not first (as serf
// drops events older than its buffer). Retention keeps the newest
// Options.MaxEvents keys by Lamport time.
func (t *Tx) MarkEvent(k EventKey) (first bool, err error) {
	seen, err := t.SeenEvent(k)
	if err != nil || seen {
		return false, err
	}
	b := t.bucket(bucketEvents)
	if err := t.put(b, k.key(), []byte(k.Name)); err != nil {
		return false, err
	}
	n := b.Sequence() + 1 // the bucket's sequence counts its keys
	floor, hasFloor := t.eventsFloor()
	var old [][]byte
	c := b.Cursor()
	for key, _ := c.First(); key != nil && n-uint64(len(old)) > uint64(t.s.opts.MaxEvents); key, _ = c.Next() {
		old = append(old, clone(key))
	}
	for _, key := range old {
		if lt := binary.BigEndian.Uint64(key); !hasFloor || lt > floor {
			floor, hasFloor = lt, true
		}
		if err := t.del(b, key); err != nil {
			return false, err
		}
	}
	if err := t.setSeq(b, n-uint64(len(old))); err != nil {
		return false, err
	}
	if len(old) > 0 {
		if err := t.put(t.bucket(bucketMeta), []byte(keyEventsFloor), u64(floor)); err != nil {
			return false, err
		}
	}
	return true, nil
}

// SaveAcceptor replaces the acceptor state.
func (t *Tx) SaveAcceptor(b []byte) error {
	return t.put(t.bucket(bucketAcceptor), []byte(keyAcceptor), b)
}

// LoadAcceptor returns the acceptor state, nil when none was saved.
func (t *Tx) LoadAcceptor() ([]byte, error) {
	return clone(t.bucket(bucketAcceptor).Get([]byte(keyAcceptor))), nil
}

// AppendDecision stores the decision of epoch. Storing the same bytes again
// is a no-op; different bytes for a stored epoch return ErrConflict and
// change nothing. Epochs need not be contiguous (gaps are filled later).
func (t *Tx) AppendDecision(epoch uint64, b []byte) error {
	if b == nil {
		b = []byte{}
	}
	bk := t.bucket(bucketDecisions)
	if old := bk.Get(u64(epoch)); old != nil {
		if bytes.Equal(old, b) {
			return nil
		}
		return fmt.Errorf("epoch %d: %w", epoch, ErrConflict)
	}
	return t.put(bk, u64(epoch), b)
}

// Decision returns the decision of epoch, nil when none is stored.
func (t *Tx) Decision(epoch uint64) ([]byte, error) {
	return clone(t.bucket(bucketDecisions).Get(u64(epoch))), nil
}

// Decisions returns up to limit decisions with epoch >= from, in epoch
// order; limit <= 0 means all.
func (t *Tx) Decisions(from uint64, limit int) ([]EpochBytes, error) {
	var out []EpochBytes
	c := t.bucket(bucketDecisions).Cursor()
	for k, v := c.Seek(u64(from)); k != nil; k, v = c.Next() {
		if limit > 0 && len(out) >= limit {
			break
		}
		out = append(out, EpochBytes{Epoch: binary.BigEndian.Uint64(k), Bytes: clone(v)})
	}
	return out, nil
}

// LastEpoch returns the highest stored decision epoch; ok is false when the
// view log is empty (epoch 0 is a valid epoch).
func (t *Tx) LastEpoch() (epoch uint64, ok bool, err error) {
	k, _ := t.bucket(bucketDecisions).Cursor().Last()
	if k == nil {
		return 0, false, nil
	}
	return binary.BigEndian.Uint64(k), true, nil
}

// SaveView replaces the view snapshot. An epoch older than the saved one
// returns ErrStale; the same epoch overwrites.
func (t *Tx) SaveView(epoch uint64, b []byte) error {
	bk := t.bucket(bucketView)
	if old := bk.Get([]byte(keyView)); len(old) >= 8 {
		if cur := binary.BigEndian.Uint64(old); epoch < cur {
			return fmt.Errorf("save view %d over %d: %w", epoch, cur, ErrStale)
		}
	}
	v := make([]byte, 8, 8+len(b))
	binary.BigEndian.PutUint64(v, epoch)
	return t.put(bk, []byte(keyView), append(v, b...))
}

// LoadView returns the view snapshot; b is nil when none was saved.
func (t *Tx) LoadView() (epoch uint64, b []byte, err error) {
	v := t.bucket(bucketView).Get([]byte(keyView))
	if v == nil {
		return 0, nil, nil
	}
	if len(v) < 8 {
		return 0, nil, errors.New("store: saved view shorter than its epoch")
	}
	return binary.BigEndian.Uint64(v), append([]byte{}, v[8:]...), nil
}

func requireKey(what, k string) error {
	if k == "" {
		return fmt.Errorf("store: empty %s", what)
	}
	return nil
}

// PutJob stores the recovery-journal entry id.
func (t *Tx) PutJob(id string, b []byte) error {
	if err := requireKey("job id", id); err != nil {
		return err
	}
	return t.put(t.bucket(bucketJobs), []byte(id), b)
}

// Job returns the journal entry id, nil when absent.
func (t *Tx) Job(id string) ([]byte, error) {
	if id == "" {
		return nil, nil
	}
	return clone(t.bucket(bucketJobs).Get([]byte(id))), nil
}

// DeleteJob removes the journal entry id; absent is not an error.
func (t *Tx) DeleteJob(id string) error {
	if id == "" {
		return nil
	}
	return t.del(t.bucket(bucketJobs), []byte(id))
}

// Jobs returns every journal entry, sorted by id (bytewise).
func (t *Tx) Jobs() ([]IDBytes, error) {
	var out []IDBytes
	err := t.bucket(bucketJobs).ForEach(func(k, v []byte) error {
		out = append(out, IDBytes{ID: string(k), Bytes: clone(v)})
		return nil
	})
	return out, err
}

// PutModel stores the model snapshot of peer.
func (t *Tx) PutModel(peer string, b []byte) error {
	if err := requireKey("model peer", peer); err != nil {
		return err
	}
	return t.put(t.bucket(bucketModels), []byte(peer), b)
}

// Model returns the model snapshot of peer, nil when absent.
func (t *Tx) Model(peer string) ([]byte, error) {
	if peer == "" {
		return nil, nil
	}
	return clone(t.bucket(bucketModels).Get([]byte(peer))), nil
}

// Models returns every model snapshot, by peer.
func (t *Tx) Models() (map[string][]byte, error) {
	out := map[string][]byte{}
	err := t.bucket(bucketModels).ForEach(func(k, v []byte) error {
		out[string(k)] = clone(v)
		return nil
	})
	return out, err
}

// DeleteModel removes the model snapshot of peer; absent is not an error.
func (t *Tx) DeleteModel(peer string) error {
	if peer == "" {
		return nil
	}
	return t.del(t.bucket(bucketModels), []byte(peer))
}

// SetMeta stores agent metadata under k.
func (t *Tx) SetMeta(k string, v []byte) error {
	if err := requireKey("meta key", k); err != nil {
		return err
	}
	return t.put(t.bucket(bucketAgent), []byte(k), v)
}

// Meta returns agent metadata k, nil when absent.
func (t *Tx) Meta(k string) ([]byte, error) {
	if k == "" {
		return nil, nil
	}
	return clone(t.bucket(bucketAgent).Get([]byte(k))), nil
}
