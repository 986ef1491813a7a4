package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// r12User is an account with one certified device, to sign entries as a
// member that runs no node.
type r12User struct {
	acct *identity.AccountKey
	dev  *identity.DeviceKey
	cert *identity.DeviceCert
}

func r12NewUser(t testing.TB, name string) *r12User {
	t.Helper()
	acct, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := acct.CertifyDevice(dev, name, 1_700_000_000)
	if err != nil {
		t.Fatal(err)
	}
	return &r12User{acct: acct, dev: dev, cert: cert}
}

func (u *r12User) id() identity.AccountID { return u.acct.ID() }

// r12Sign signs c after prev with dev/cert, at prev's time.
func r12Sign(t testing.TB, dev *identity.DeviceKey, cert *identity.DeviceCert, prev *groupstate.Entry, c groupstate.Change) (*groupstate.Entry, []byte) {
	t.Helper()
	e, err := groupstate.Sign(dev, cert, prev, prev.Time, c)
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return e, b
}

func (n *testNode) r12Owner(t testing.TB, prev *groupstate.Entry, c groupstate.Change) (*groupstate.Entry, []byte) {
	return r12Sign(t, n.keys.device, n.keys.cert, prev, c)
}

// r12SetKey writes raw under key (the group log keyspace) as is.
func (n *testNode) r12SetKey(t testing.TB, key, raw []byte) {
	t.Helper()
	if err := n.db.Update(func(tx *storage.Txn) error { return tx.Set(n.st.groupLog, key, raw) }); err != nil {
		t.Fatal(err)
	}
}

// r12Replayed is what the store replays to, the cache left out.
func (n *testNode) r12Replayed(id groupstate.GroupID) (*groupstate.Log, error) {
	var l *groupstate.Log
	var bad error
	err := n.db.View(func(tx *storage.Txn) error {
		return n.replayLogs(tx, id[:], func(_ []byte, rl *groupstate.Log, rerr error) { l, bad = rl, rerr })
	})
	switch {
	case err != nil:
		return nil, err
	case bad != nil:
		return nil, bad
	case l == nil:
		return nil, chat.ErrUnknownGroup
	}
	return l, nil
}

// r12Load is loadGroupTx in a view, a panic turned into a test failure
// (the daemon has no recover on this path: a panic ends the process).
func (n *testNode) r12Load(t *testing.T, id groupstate.GroupID) (l *groupstate.Log, err error) {
	t.Helper()
	defer func() {
		if r := recover(); r != nil {
			t.Fatalf("loading the group panicked: %v", r)
		}
	}()
	err = n.db.View(func(tx *storage.Txn) (err error) {
		l, err = n.loadGroupTx(tx, id)
		return err
	})
	return l, err
}

func r12NewGroup(t *testing.T, n *testNode, title string) groupstate.GroupID {
	t.Helper()
	g, err := n.CreateGroup(context.Background(), title)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	return groupstate.GroupID(raw)
}

// TestReview12ShortKeyInStoredLogPanics: a key under a group's prefix
// that is shorter than group ‖ seq (39 bytes: id ‖ 00 00 00 00 00 00 01,
// which sorts after every seq below 256 and before seq 256), holding
// the entry that follows the cached head, with an entry stored at seq
// 256. cachedGroupTx reads on from the cached head (Last gives seq 256,
// a 40-byte key) and, for the 39-byte key whose value parses as the next
// entry, calls binary.BigEndian.Uint64(k[32:]) on 7 bytes: an index out
// of range panic on every read of the group (the API, every receive that
// touches it, loadGroups at start-up once the cache holds it) — the
// daemon crashes. A replay (the code before the cache) answers an error,
// "group log key of 39 bytes".
//
// Right behaviour: the cache path checks len(k) == 40 before reading the
// seq (and so answers errStaleCache, then the replay's error).
func TestReview12ShortKeyInStoredLogPanics(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	id := r12NewGroup(t, alice, "short key")
	writePins(t, alice, id, 3)
	l, err := alice.r12Load(t, id) // cached now
	if err != nil {
		t.Fatal(err)
	}
	head := l.Head()
	_, next := alice.r12Owner(t, head, groupstate.Change{Kind: groupstate.KindTitle, Text: "next"})
	alice.r12SetKey(t, append(append([]byte{}, id[:]...), 0, 0, 0, 0, 0, 0, 1), next)
	alice.r12SetKey(t, groupEntryKey(id, 256), next)

	_, werr := alice.r12Replayed(id)
	if werr == nil {
		t.Fatal("the store replays: the test needs a store the replay refuses")
	}
	if _, err := alice.r12Load(t, id); err == nil {
		t.Fatalf("a store the replay refuses (%v) loaded", werr)
	}
}

// TestReview12LongKeyReadAsEntry: a 41-byte key (id ‖ seq ‖ 00) under a
// group's prefix holding the entry that follows the cached head, and the
// next entry at its proper 40-byte key. A replay refuses the store
// ("group log key of 41 bytes": loadGroupTx, and loadGroups for every
// group, fail); the cache reads the 41-byte key's first 8 seq bytes as
// a seq, takes both entries, serves a log the store does not replay to,
// and caches it (so loadGroups no longer fails either). The invariant the
// commit's own test states ("the log a node loads is the one a replay of
// its store gives") breaks on this store shape.
//
// Right behaviour: as for the short key, a key that is not 40 bytes
// ends the read from the cached head (errStaleCache) and the replay
// decides.
func TestReview12LongKeyReadAsEntry(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	id := r12NewGroup(t, alice, "long key")
	writePins(t, alice, id, 3)
	l, err := alice.r12Load(t, id) // cached now
	if err != nil {
		t.Fatal(err)
	}
	head := l.Head()
	e1, raw1 := alice.r12Owner(t, head, groupstate.Change{Kind: groupstate.KindTitle, Text: "under a 41-byte key"})
	_, raw2 := alice.r12Owner(t, e1, groupstate.Change{Kind: groupstate.KindTitle, Text: "after it"})
	alice.r12SetKey(t, append(groupEntryKey(id, head.Seq+1), 0), raw1)
	alice.r12SetKey(t, groupEntryKey(id, head.Seq+2), raw2)

	_, werr := alice.r12Replayed(id)
	if werr == nil {
		t.Fatal("the store replays: the test needs a store the replay refuses")
	}
	got, err := alice.r12Load(t, id)
	if err == nil {
		t.Fatalf("the replay refuses the store (%v), the node loads it: head %d, title %q", werr, got.Head().Seq, got.State().Title)
	}
}

// TestReview12GapAfterCachedHeadRefused (held): entries stored past the
// cached head with a gap (seq head+2 and head+3, no head+1), and an
// entry at head+1 whose seq inside says head+2: the cache does not read
// on over them; the node answers what a replay answers (an error).
func TestReview12GapAfterCachedHeadRefused(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	id := r12NewGroup(t, alice, "gaps")
	writePins(t, alice, id, 3)
	l, err := alice.r12Load(t, id)
	if err != nil {
		t.Fatal(err)
	}
	head := l.Head()
	e1, raw1 := alice.r12Owner(t, head, groupstate.Change{Kind: groupstate.KindTitle, Text: "one"})
	e2, raw2 := alice.r12Owner(t, e1, groupstate.Change{Kind: groupstate.KindTitle, Text: "two"})
	_, raw3 := alice.r12Owner(t, e2, groupstate.Change{Kind: groupstate.KindTitle, Text: "three"})
	alice.r12SetKey(t, groupEntryKey(id, head.Seq+2), raw2)
	alice.r12SetKey(t, groupEntryKey(id, head.Seq+3), raw3)
	if _, werr := alice.r12Replayed(id); werr == nil {
		t.Fatal("a store with a gap replays")
	}
	if got, err := alice.r12Load(t, id); err == nil {
		t.Fatalf("a store with a gap loaded: head %d", got.Head().Seq)
	}
	// The entry for head+2 stored under head+1 (and nothing at head+2):
	// the chain holds, the keys do not.
	if err := alice.db.Update(func(tx *storage.Txn) error { return tx.Delete(alice.st.groupLog, groupEntryKey(id, head.Seq+2)) }); err != nil {
		t.Fatal(err)
	}
	alice.r12SetKey(t, groupEntryKey(id, head.Seq+1), raw2)
	if got, err := alice.r12Load(t, id); err == nil && got.Head().Seq != head.Seq {
		t.Fatalf("entries under keys that are not their seq read on: head %d", got.Head().Seq)
	}
	// Repaired: the log loads, with all three.
	alice.r12SetKey(t, groupEntryKey(id, head.Seq+1), raw1)
	alice.r12SetKey(t, groupEntryKey(id, head.Seq+2), raw2)
	got, err := alice.r12Load(t, id)
	if err != nil || got.State().Title != "three" {
		t.Fatalf("repaired: %v", err)
	}
}
