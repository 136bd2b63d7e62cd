package store

// Each method below is one bbolt transaction; a write commits (fsynced)
// before it returns. Use Batch to make several writes atomic.

// RecordBoot appends b to the boot history (see Tx.RecordBoot).
func (s *Store) RecordBoot(b Boot) error {
	return s.update(func(tx *Tx) error { return tx.RecordBoot(b) })
}

// Boots returns up to limit boots, newest first; limit <= 0 means all.
func (s *Store) Boots(limit int) (out []Boot, err error) {
	err = s.view(func(tx *Tx) error { out, err = tx.Boots(limit); return err })
	return out, err
}

// AppendMember appends r to the member history (see Tx.AppendMember).
func (s *Store) AppendMember(r MemberRecord) error {
	return s.update(func(tx *Tx) error { return tx.AppendMember(r) })
}

// MemberHistory returns up to limit records for node ("" = all), newest
// first; limit <= 0 means all.
func (s *Store) MemberHistory(node string, limit int) (out []MemberRecord, err error) {
	err = s.view(func(tx *Tx) error { out, err = tx.MemberHistory(node, limit); return err })
	return out, err
}

// MarkEvent records k and reports whether it is new (see Tx.MarkEvent).
func (s *Store) MarkEvent(k EventKey) (first bool, err error) {
	err = s.update(func(tx *Tx) error { first, err = tx.MarkEvent(k); return err })
	return first && err == nil, err
}

// SeenEvent reports whether k was marked (see Tx.SeenEvent).
func (s *Store) SeenEvent(k EventKey) (seen bool, err error) {
	err = s.view(func(tx *Tx) error { seen, err = tx.SeenEvent(k); return err })
	return seen, err
}

// SaveAcceptor replaces the acceptor state.
func (s *Store) SaveAcceptor(b []byte) error {
	return s.update(func(tx *Tx) error { return tx.SaveAcceptor(b) })
}

// LoadAcceptor returns the acceptor state, nil when none was saved.
func (s *Store) LoadAcceptor() (b []byte, err error) {
	err = s.view(func(tx *Tx) error { b, err = tx.LoadAcceptor(); return err })
	return b, err
}

// AppendDecision stores the decision of epoch (see Tx.AppendDecision).
func (s *Store) AppendDecision(epoch uint64, b []byte) error {
	return s.update(func(tx *Tx) error { return tx.AppendDecision(epoch, b) })
}

// Decision returns the decision of epoch, nil when none is stored.
func (s *Store) Decision(epoch uint64) (b []byte, err error) {
	err = s.view(func(tx *Tx) error { b, err = tx.Decision(epoch); return err })
	return b, err
}

// Decisions returns up to limit decisions from epoch from on, in order;
// limit <= 0 means all.
func (s *Store) Decisions(from uint64, limit int) (out []EpochBytes, err error) {
	err = s.view(func(tx *Tx) error { out, err = tx.Decisions(from, limit); return err })
	return out, err
}

// LastEpoch returns the highest stored decision epoch; ok is false when the
// view log is empty.
func (s *Store) LastEpoch() (epoch uint64, ok bool, err error) {
	err = s.view(func(tx *Tx) error { epoch, ok, err = tx.LastEpoch(); return err })
	return epoch, ok, err
}

// SaveView replaces the view snapshot (see Tx.SaveView).
func (s *Store) SaveView(epoch uint64, b []byte) error {
	return s.update(func(tx *Tx) error { return tx.SaveView(epoch, b) })
}

// LoadView returns the view snapshot; b is nil when none was saved.
func (s *Store) LoadView() (epoch uint64, b []byte, err error) {
	err = s.view(func(tx *Tx) error { epoch, b, err = tx.LoadView(); return err })
	return epoch, b, err
}

// PutJob stores the recovery-journal entry id.
func (s *Store) PutJob(id string, b []byte) error {
	return s.update(func(tx *Tx) error { return tx.PutJob(id, b) })
}

// Job returns the journal entry id, nil when absent.
func (s *Store) Job(id string) (b []byte, err error) {
	err = s.view(func(tx *Tx) error { b, err = tx.Job(id); return err })
	return b, err
}

// DeleteJob removes the journal entry id.
func (s *Store) DeleteJob(id string) error {
	return s.update(func(tx *Tx) error { return tx.DeleteJob(id) })
}

// Jobs returns every journal entry, sorted by id.
func (s *Store) Jobs() (out []IDBytes, err error) {
	err = s.view(func(tx *Tx) error { out, err = tx.Jobs(); return err })
	return out, err
}

// PutModel stores the model snapshot of peer.
func (s *Store) PutModel(peer string, b []byte) error {
	return s.update(func(tx *Tx) error { return tx.PutModel(peer, b) })
}

// Model returns the model snapshot of peer, nil when absent.
func (s *Store) Model(peer string) (b []byte, err error) {
	err = s.view(func(tx *Tx) error { b, err = tx.Model(peer); return err })
	return b, err
}

// Models returns every model snapshot, by peer.
func (s *Store) Models() (out map[string][]byte, err error) {
	err = s.view(func(tx *Tx) error { out, err = tx.Models(); return err })
	return out, err
}

// DeleteModel removes the model snapshot of peer.
func (s *Store) DeleteModel(peer string) error {
	return s.update(func(tx *Tx) error { return tx.DeleteModel(peer) })
}

// SetMeta stores agent metadata under k.
func (s *Store) SetMeta(k string, v []byte) error {
	return s.update(func(tx *Tx) error { return tx.SetMeta(k, v) })
}

// Meta returns agent metadata k, nil when absent.
func (s *Store) Meta(k string) (v []byte, err error) {
	err = s.view(func(tx *Tx) error { v, err = tx.Meta(k); return err })
	return v, err
}
