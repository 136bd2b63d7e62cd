// Package store is the agent's durable state: one bbolt file,
// <data-dir>/vigil.db.
//
// It is an edge package: it does file I/O, but takes no logger and starts
// no goroutines of its own. It imports no other vigil package; the state
// of consensus, recovery and scoring is opaque bytes that their owners
// encode and decode.
//
// # Opening
//
// Open creates the data dir (0700) and the file (0600) if missing. bbolt
// is always opened with a lock Timeout (Options.Timeout, default 1s) and
// never with NoSync. Errors are one line, name the dir or file, and match
// a sentinel with errors.Is:
//
//   - ErrInUse: another agent holds the file lock (bbolt's flock timed out).
//   - ErrNotWritable: the dir or file can't be created or opened for
//     writing (permissions, read-only file system, a file in the way).
//   - ErrCorrupt: the file is not a valid bbolt database, is truncated,
//     fails bbolt's consistency check (Tx.Check), or lacks this package's
//     layout. The message ends "move it away to start afresh".
//   - ErrNewerSchema: the schema version in the file is newer than
//     SchemaVersion.
//
// An existing non-empty file is verified through a read-only bbolt handle
// (shared lock, no writes) before it is opened for writing, so a corrupt
// or newer file is never modified. An empty file, or a bbolt file with no
// buckets at all (a crash between bbolt's initialisation and our first
// commit), holds nothing and is initialised. The check reads every page;
// retention keeps the file small, but the view log and the recovery
// journal grow until their owners prune them.
//
// # Buckets and keys (schema version 1)
//
//	meta       "schema"        uint64 BE, SchemaVersion
//	           "events.floor"  uint64 BE, highest Lamport time trimmed from events
//	agent      string key      opaque bytes (SetMeta/Meta)
//	boots      uint64 BE seq   JSON Boot; newest Options.MaxBoots kept
//	members    uint64 BE seq   JSON MemberRecord; newest Options.MaxMembers kept
//	events     LTime uint64 BE ‖ sha256(uvarint(len(name)) ‖ name ‖ payload)
//	                           (40 bytes) → event name; the bucket's
//	                           sequence is its key count; newest
//	                           Options.MaxEvents by LTime kept
//	acceptor   "state"         opaque bytes
//	decisions  epoch uint64 BE opaque bytes, one per epoch, never overwritten
//	view       "current"       epoch uint64 BE ‖ opaque bytes
//	jobs       job id          opaque bytes
//	models     peer name       opaque bytes
//
// Sequence numbers (boots, members) are bbolt bucket sequences, so "newest"
// means last appended, not latest timestamp: wall clocks step.
// Trimming happens in the same transaction as the append.
//
// # Transactions
//
// Every write method is its own bbolt read-write transaction, committed and
// fsynced before it returns. Store.Batch runs a callback in one
// transaction, with a Tx that has every method of Store; nothing written
// in it is kept unless the callback returns nil and the commit succeeds.
// Byte slices returned are copies the caller owns; "absent" is a nil slice.
//
// # The caller's obligations
//
//   - Persist before you act: the acceptor state (and any decision learned)
//     must be saved, with SaveAcceptor or in one Batch, before the reply
//     that depends on it is sent ("Paxos Made Simple" §2.3: an acceptor
//     must remember what it promised and accepted across a restart).
//   - Call MarkEvent before running a user-event handler and run it only
//     when first is true. Events at or below the Lamport time of events
//     already trimmed are reported as seen: a very late replay is dropped,
//     never run twice.
//   - AppendDecision refuses to overwrite: ErrConflict for a different
//     value at a stored epoch means a safety bug or a corrupt peer, not a
//     retry case. SaveView refuses an older epoch (ErrStale).
//   - Prune the recovery journal (DeleteJob) and model snapshots
//     (DeleteModel) yourself; they are not bounded here.
//   - Close the Store on shutdown; one process per data dir.
package store
