package node

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
	"github.com/peergram/peergram/node/localapi"
	"github.com/peergram/peergram/storage"
)

// Files in a node's home directory.
const (
	fileIdentity = "identity.json" // public identity, readable without the daemon
	fileToken    = "token"         // local API bearer token (0600)
	fileAPI      = "api"           // API base URL, written while the daemon runs
	fileSocket   = "api.sock"      // API Unix socket, for the CLI, while the daemon runs
	fileLock     = "daemon.lock"   // held by the running daemon
	dirStore     = "store"         // Badger store
)

// ErrNotInitialised reports a home directory without an identity.
var ErrNotInitialised = errors.New("node: home is not initialised")

// ErrAlreadyInitialised reports Init on a home that has an identity.
var ErrAlreadyInitialised = errors.New("node: home is already initialised")

// ErrHomeNotWritable reports a home directory the node cannot write to
// (a read-only file system, or another user's directory).
var ErrHomeNotWritable = errors.New("the home directory is not writable (read-only file system or no permission); the node keeps its keys and messages there")

// ErrRunning reports a second daemon on the same home.
var ErrRunning = errors.New("node: another daemon is running on this home")

// Info is the public identity of a node, as written to identity.json.
type Info struct {
	AccountID string `json:"account_id"`
	Link      string `json:"link"`
	PeerID    string `json:"peer_id"`
	Name      string `json:"name"`
	DeviceID  string `json:"device_id"`
}

// initialOneTimePrekeys is how many one-time prekeys of each kind a new
// device generates and publishes.
const initialOneTimePrekeys = 50

// Init creates a node home: account and device keys, the device
// certificate and first signed device list, prekeys, the libp2p transport
// key, the local API token and identity.json.
func Init(home, name string) (Info, error) {
	if name == "" {
		return Info{}, fmt.Errorf("node: init: a name is required")
	}
	if _, err := os.Stat(filepath.Join(home, fileIdentity)); err == nil {
		return Info{}, fmt.Errorf("%w: %s", ErrAlreadyInitialised, home)
	}
	if err := os.MkdirAll(home, 0o700); err != nil {
		return Info{}, homeError(home, err)
	}
	if err := privateDir(home); err != nil {
		return Info{}, homeError(home, err)
	}
	probe := filepath.Join(home, ".write-test")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		return Info{}, homeError(home, err)
	}
	os.Remove(probe)
	acct, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		return Info{}, err
	}
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		return Info{}, err
	}
	now := time.Now().Unix()
	cert, err := acct.CertifyDevice(dev, name, now)
	if err != nil {
		return Info{}, err
	}
	list, err := acct.SignDeviceList(nil, []identity.DeviceCert{*cert}, now)
	if err != nil {
		return Info{}, err
	}
	prekeys, err := pqxdh.GeneratePrekeys(rand.Reader, dev, initialOneTimePrekeys)
	if err != nil {
		return Info{}, err
	}
	p2pKey, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return Info{}, err
	}
	pid, err := peer.IDFromPrivateKey(p2pKey)
	if err != nil {
		return Info{}, err
	}
	db, err := storage.Open(storage.Options{Dir: filepath.Join(home, dirStore)})
	if err != nil {
		return Info{}, fmt.Errorf("node: init: %w", err)
	}
	defer db.Close()
	st := newStore(db)
	keys := &keyring{account: acct, device: dev, cert: cert, list: list, prekeys: prekeys, p2p: p2pKey, name: name}
	if err := db.Update(func(tx *storage.Txn) error { return st.putKeys(tx, keys) }); err != nil {
		return Info{}, fmt.Errorf("node: init: %w", err)
	}
	if err := writeFileAtomic(filepath.Join(home, fileToken), []byte(localapi.NewToken()+"\n"), 0o600); err != nil {
		return Info{}, err
	}
	info := Info{AccountID: acct.ID().String(), Link: acct.ID().Link(), PeerID: pid.String(), Name: name, DeviceID: dev.ID().String()}
	raw, _ := json.MarshalIndent(info, "", "  ")
	if err := writeFileAtomic(filepath.Join(home, fileIdentity), append(raw, '\n'), 0o644); err != nil {
		return Info{}, err
	}
	return info, nil
}

// privateDir takes every permission on dir away from group and others
// (keys live there); the owner's own bits are left as they are.
func privateDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	return os.Chmod(dir, fi.Mode().Perm()&^0o077)
}

// ReadInfo reads identity.json; it needs no running daemon.
func ReadInfo(home string) (Info, error) {
	raw, err := os.ReadFile(filepath.Join(home, fileIdentity))
	if errors.Is(err, os.ErrNotExist) {
		return Info{}, fmt.Errorf("%w: %s (run 'peergram init --home %s --name NAME')", ErrNotInitialised, home, home)
	}
	if err != nil {
		return Info{}, err
	}
	var info Info
	if err := json.Unmarshal(raw, &info); err != nil {
		return Info{}, fmt.Errorf("node: %s: %w", fileIdentity, err)
	}
	return info, nil
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, perm); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
