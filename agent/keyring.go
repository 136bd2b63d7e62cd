package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// keyringFile is the gossip keyring in the data dir, in serf's
// -keyring-file format: a JSON array of base64 keys, the primary first.
// serf rewrites it after every change made with `vigil keys`.
const keyringFile = "keyring"

// loadKeyring returns the gossip keyring of the agent. A keyring file in
// the data dir wins over --encrypt, as in Consul: once the keys were
// rotated, the --encrypt of the original command line is an old key. With
// --encrypt and no file, the file is created holding that key, so that a
// rotation outlives a restart. Without either, gossip is not encrypted
// (and stays so: memberlist cannot turn encryption on at run time).
// ignored reports an --encrypt key that is not in the file.
func loadKeyring(dataDir string, encrypt []byte) (keys [][]byte, path string, ignored bool, err error) {
	path = filepath.Join(dataDir, keyringFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if encrypt == nil {
			return nil, "", false, nil
		}
		if err := writeKeyring(path, [][]byte{encrypt}); err != nil {
			return nil, "", false, err
		}
		return [][]byte{encrypt}, path, false, nil
	case err != nil:
		return nil, "", false, fmt.Errorf("keyring %s: %v", path, err)
	}
	var encoded []string
	if err := json.Unmarshal(b, &encoded); err != nil {
		return nil, "", false, fmt.Errorf("keyring %s: not a JSON array of keys (serf's keyring format): %v", path, err)
	}
	if len(encoded) == 0 {
		return nil, "", false, fmt.Errorf("keyring %s: holds no key; remove the file to start from --encrypt", path)
	}
	ignored = encrypt != nil
	for i, e := range encoded {
		k, err := ParseKey(e)
		if err != nil {
			return nil, "", false, fmt.Errorf("keyring %s: key %d: %v", path, i+1, err)
		}
		keys = append(keys, k)
		if bytes.Equal(k, encrypt) {
			ignored = false
		}
	}
	return keys, path, ignored, nil
}

// writeKeyring writes keys to path (0600: they are secrets) through a
// temporary file, so a crash leaves the old or the new keyring.
func writeKeyring(path string, keys [][]byte) error {
	enc := make([]string, len(keys))
	for i, k := range keys {
		enc[i] = base64.StdEncoding.EncodeToString(k)
	}
	b, err := json.MarshalIndent(enc, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write keyring: %v", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write keyring: %v", err)
	}
	return nil
}
