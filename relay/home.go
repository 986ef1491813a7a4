package relay

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// Names of the entries of a relay home directory.
const (
	// IdentityFile holds the relay's libp2p Ed25519 private key, encoded
	// with crypto.MarshalPrivateKey (libp2p's protobuf PrivateKey), mode
	// 0600. Its public key is the relay's peer ID, which clients pin in the
	// relay multiaddrs they are given, so losing it changes the relay's
	// identity.
	IdentityFile = "identity.key"

	// StoreDir is the Badger directory of the relay's store (mailboxes,
	// directory records).
	StoreDir = "store"

	// AddrsFile lists the running relay's full multiaddrs, one per line,
	// each ending in /p2p/<peer ID>. It is replaced atomically once the
	// relay listens and removed when it stops cleanly.
	AddrsFile = "addrs"
)

// Permissions of what Init creates: the home holds a private key, so only
// its owner may read it.
const (
	homeMode     fs.FileMode = 0o700
	identityMode fs.FileMode = 0o600
	addrsMode    fs.FileMode = 0o644
)

// Init prepares home for a relay: it creates the directory (mode 0700, with
// parents), a new Ed25519 identity key (IdentityFile, mode 0600) and the
// store directory. It refuses (ErrAlreadyInitialised) when home already has
// an identity, so an operator cannot lose the relay's peer ID by running
// init twice. New(Config{Home: home}).ID() tells the new peer ID.
func Init(home string) error {
	if home == "" {
		return fmt.Errorf("relay: init: %w: empty home", ErrInvalidConfig)
	}
	if err := os.MkdirAll(home, homeMode); err != nil {
		return fmt.Errorf("relay: init: %w", err)
	}
	keyPath := filepath.Join(home, IdentityFile)
	if _, err := os.Lstat(keyPath); err == nil {
		return fmt.Errorf("relay: init %s: %w", home, ErrAlreadyInitialised)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("relay: init: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(home, StoreDir), homeMode); err != nil {
		return fmt.Errorf("relay: init: %w", err)
	}

	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return fmt.Errorf("relay: init: generate key: %w", err)
	}
	b, err := crypto.MarshalPrivateKey(sk)
	if err != nil {
		return fmt.Errorf("relay: init: marshal key: %w", err)
	}
	if err := writeKeyExclusive(keyPath, b); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("relay: init %s: %w", home, ErrAlreadyInitialised)
		}
		return fmt.Errorf("relay: init: %w", err)
	}
	return nil
}

// writeKeyExclusive writes b to a temporary file, syncs it, and links it
// to path, which fails with fs.ErrExist if path exists. Readers therefore
// never see a partly written key, and a concurrent Init cannot overwrite
// another's key.
func writeKeyExclusive(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := writeSyncClose(tmp, b, identityMode); err != nil {
		return err
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// writeSyncClose writes b to f, sets its mode, syncs and closes it.
func writeSyncClose(f *os.File, b []byte, mode fs.FileMode) error {
	_, err := f.Write(b)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir makes a rename or link in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// loadIdentity reads the identity key of home. A missing file (or home)
// is ErrNotInitialised.
func loadIdentity(home string) (crypto.PrivKey, fs.FileMode, error) {
	keyPath := filepath.Join(home, IdentityFile)
	b, err := os.ReadFile(keyPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("%w: %s has no %s", ErrNotInitialised, home, IdentityFile)
	}
	if err != nil {
		return nil, 0, err
	}
	st, err := os.Stat(keyPath)
	if err != nil {
		return nil, 0, err
	}
	sk, err := crypto.UnmarshalPrivateKey(b)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %s: %v", ErrBadIdentity, keyPath, err)
	}
	if sk.Type() != crypto.Ed25519 {
		return nil, 0, fmt.Errorf("%w: %s: key type %v, want Ed25519", ErrBadIdentity, keyPath, sk.Type())
	}
	return sk, st.Mode().Perm(), nil
}

// writeAddrs replaces home's AddrsFile with lines, atomically (temporary
// file and rename), so a reader sees the old list or the new one.
func writeAddrs(home string, lines []string) error {
	path := filepath.Join(home, AddrsFile)
	tmp, err := os.CreateTemp(home, "."+AddrsFile+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // no-op after a successful rename
	var buf []byte
	for _, l := range lines {
		buf = append(buf, l...)
		buf = append(buf, '\n')
	}
	if err := writeSyncClose(tmp, buf, addrsMode); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return syncDir(home)
}

// removeAddrs deletes home's AddrsFile; a missing file is not an error.
func removeAddrs(home string) error {
	err := os.Remove(filepath.Join(home, AddrsFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}
