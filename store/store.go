package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// FileName is the name of the database file inside the data dir.
const FileName = "vigil.db"

// SchemaVersion is the layout this package reads and writes. A file with a
// larger version is refused untouched (ErrNewerSchema).
const SchemaVersion = 1

// Defaults used for zero fields of Options.
const (
	DefaultTimeout    = time.Second
	DefaultMaxMembers = 10000
	DefaultMaxEvents  = 8192
	DefaultMaxBoots   = 1000
)

// Sentinel errors; test with errors.Is.
var (
	// ErrInUse: another process (or another Store in this one) holds the
	// lock on the data dir.
	ErrInUse = errors.New("store: data dir in use by another agent")
	// ErrNotWritable: the data dir or file cannot be created or opened for
	// writing (permissions, read-only file system, a file where the dir
	// should be).
	ErrNotWritable = errors.New("store: data dir not writable")
	// ErrCorrupt: the file exists but is not a valid bbolt database, fails
	// bbolt's consistency check, or does not have this package's layout.
	// The file is left untouched.
	ErrCorrupt = errors.New("store: database corrupt")
	// ErrNewerSchema: the file was written by a newer vigil. The file is
	// left untouched.
	ErrNewerSchema = errors.New("store: database written by a newer schema")
	// ErrConflict: a different decision is already stored for that epoch.
	ErrConflict = errors.New("store: conflicting decision for epoch")
	// ErrStale: SaveView was given an epoch older than the saved view.
	ErrStale = errors.New("store: view older than the saved one")
	// ErrClosed: the Store was closed.
	ErrClosed = errors.New("store: closed")
)

// Options tune Open. The zero value is valid.
type Options struct {
	// Timeout is how long Open waits for the file lock held by another
	// agent before it returns ErrInUse. 0 means DefaultTimeout (1s);
	// negative is invalid. bbolt is never opened without a timeout.
	Timeout time.Duration
	// MaxMembers is how many member-history records are kept (the newest by
	// insertion order). 0 means DefaultMaxMembers; negative is invalid.
	MaxMembers int
	// MaxEvents is how many handled user events are remembered (the newest
	// by Lamport time). 0 means DefaultMaxEvents; negative is invalid.
	MaxEvents int
	// MaxBoots is how many boot records are kept (newest by insertion).
	// 0 means DefaultMaxBoots; negative is invalid.
	MaxBoots int
	// FailWrite, when set, is called before every write of a transaction
	// after Open; an error aborts the transaction. It is for tests that
	// fail the i-th write of a caller (as pebble's errorfs does).
	FailWrite func() error
}

func (o Options) withDefaults() (Options, error) {
	if o.Timeout < 0 {
		return o, fmt.Errorf("store: Options.Timeout %v is negative", o.Timeout)
	}
	if o.MaxMembers < 0 || o.MaxEvents < 0 || o.MaxBoots < 0 {
		return o, fmt.Errorf("store: Options.MaxMembers (%d), MaxEvents (%d) and MaxBoots (%d) must not be negative",
			o.MaxMembers, o.MaxEvents, o.MaxBoots)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.MaxMembers == 0 {
		o.MaxMembers = DefaultMaxMembers
	}
	if o.MaxEvents == 0 {
		o.MaxEvents = DefaultMaxEvents
	}
	if o.MaxBoots == 0 {
		o.MaxBoots = DefaultMaxBoots
	}
	return o, nil
}

// Store is the agent's durable state in one bbolt file. It is safe for
// concurrent use; writes are serialised by bbolt.
type Store struct {
	dir  string
	path string
	db   *bolt.DB
	opts Options

	// failWrite, when non-nil, is called before every Put, Delete and
	// SetSequence inside a write transaction; an error aborts the
	// transaction. Tests use it to fail the i-th write. Set it only before
	// the Store is shared.
	failWrite func() error
}

// openError carries a one-line message naming the data dir and unwraps to
// both the sentinel and the cause.
type openError struct {
	msg   string
	kind  error
	cause error
}

func (e *openError) Error() string { return e.msg }

func (e *openError) Unwrap() []error {
	if e.cause == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.cause}
}

func errInUse(dir string, cause error) error {
	return &openError{msg: fmt.Sprintf("store: data dir %s is in use by another agent", dir), kind: ErrInUse, cause: cause}
}

func errNotWritable(dir string, cause error) error {
	return &openError{msg: fmt.Sprintf("store: data dir %s is not writable: %v", dir, cause), kind: ErrNotWritable, cause: cause}
}

func errCorrupt(path string, cause error) error {
	return &openError{msg: fmt.Sprintf("store: %s is corrupt: %v; move it away to start afresh", path, cause), kind: ErrCorrupt, cause: cause}
}

func errNewer(path string, v uint64) error {
	return &openError{
		msg:  fmt.Sprintf("store: %s has schema version %d, newer than this vigil supports (%d); upgrade vigil or move the file away", path, v, SchemaVersion),
		kind: ErrNewerSchema,
	}
}

// Open opens (creating if needed) the store in dir, creating dir with mode
// 0700 if it is missing. An existing non-empty file is first verified
// through a read-only bbolt handle (page bounds, bbolt's consistency check,
// this package's schema) so that a corrupt or newer file is never written.
func Open(dir string, opts Options) (*Store, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if dir == "" {
		return nil, errors.New("store: empty data dir")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, errNotWritable(dir, err)
	}
	path := filepath.Join(dir, FileName)

	fi, err := os.Stat(path)
	switch {
	case err == nil && fi.Mode().IsRegular() && fi.Size() > 0:
		if err := verify(dir, path, opts.Timeout); err != nil {
			return nil, err
		}
	case err == nil || errors.Is(err, fs.ErrNotExist):
		// Missing or empty: bbolt initialises it under its lock. A
		// non-regular file fails in bolt.Open below.
	default:
		return nil, classifyIO(dir, path, err)
	}

	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.Timeout})
	if err != nil {
		return nil, classifyOpen(dir, path, err)
	}
	s := &Store{dir: dir, path: path, db: db, opts: opts}
	if err := db.Update(func(tx *bolt.Tx) error { return initSchema(tx, path) }); err != nil {
		_ = db.Close()
		var oe *openError
		if errors.As(err, &oe) {
			return nil, err
		}
		return nil, classifyIO(dir, path, fmt.Errorf("init schema: %w", err))
	}
	s.failWrite = opts.FailWrite
	return s, nil
}

// Close releases the file and its lock. Further calls return ErrClosed.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close %s: %w", s.path, err)
	}
	return nil
}

// Path is the database file's path.
func (s *Store) Path() string { return s.path }

// Dir is the data dir.
func (s *Store) Dir() string { return s.dir }

// Batch runs fn in one read-write bbolt transaction, committed (fsynced)
// only if fn returns nil; otherwise nothing fn wrote is kept. Unlike
// bbolt's DB.Batch it never coalesces callers and runs fn exactly once. The
// Tx must not be used after fn returns.
func (s *Store) Batch(fn func(tx *Tx) error) error {
	return s.update(fn)
}

func (s *Store) update(fn func(tx *Tx) error) error {
	err := s.db.Update(func(btx *bolt.Tx) error { return fn(&Tx{tx: btx, s: s}) })
	return s.mapErr(err)
}

func (s *Store) view(fn func(tx *Tx) error) error {
	err := s.db.View(func(btx *bolt.Tx) error { return fn(&Tx{tx: btx, s: s}) })
	return s.mapErr(err)
}

func (s *Store) mapErr(err error) error {
	if errors.Is(err, bolt.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// verify opens path read-only (shared lock, no writes) and checks it.
func verify(dir, path string, timeout time.Duration) (err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return classifyIO(dir, path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout, ReadOnly: true})
	if err != nil {
		return classifyOpen(dir, path, err)
	}
	defer func() {
		if cerr := db.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("store: close %s after check: %w", path, cerr)
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		// A truncated file keeps valid meta pages whose high-water mark
		// points past the end; touching those pages would fault (SIGBUS).
		if tx.Size() > fi.Size() {
			return errCorrupt(path, fmt.Errorf("file is truncated: %d bytes, its pages need %d", fi.Size(), tx.Size()))
		}
		var first error
		n := 0
		for cerr := range tx.Check() {
			if first == nil {
				first = cerr
			}
			n++
		}
		if first != nil {
			if n > 1 {
				first = fmt.Errorf("%w (and %d more problems)", first, n-1)
			}
			return errCorrupt(path, fmt.Errorf("consistency check: %w", first))
		}
		_, err := checkSchema(tx, path)
		return err
	})
}

// classifyOpen maps an error from bolt.Open.
func classifyOpen(dir, path string, err error) error {
	if errors.Is(err, bolt.ErrTimeout) {
		return errInUse(dir, err)
	}
	var pe *fs.PathError
	var errno syscall.Errno
	if errors.As(err, &pe) || errors.As(err, &errno) {
		return classifyIO(dir, path, err)
	}
	// Everything else bbolt reports while reading the meta pages (invalid
	// database, version mismatch, checksum error, file size too small)
	// means the bytes are not a usable bbolt file.
	return errCorrupt(path, err)
}

func classifyIO(dir, path string, err error) error {
	if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) || errors.Is(err, syscall.ENOTDIR) {
		return errNotWritable(dir, err)
	}
	return fmt.Errorf("store: open %s: %w", path, err)
}
