package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/media"
	"github.com/peergram/peergram/relay/blobs"
	"github.com/peergram/peergram/storage"
)

// review15SealPhoto is a malicious admin's SetGroupPhoto: the content,
// the manifest's claimed type and the reference's fields are the
// caller's (an admin's node may seal anything). The chunks go into n's
// store, served with the token.
func review15SealPhoto(t *testing.T, n *testNode, group string, content []byte, mime string, edit func(*photoRef)) string {
	t.Helper()
	tok, err := blobs.NewToken(n.rand)
	if err != nil {
		t.Fatal(err)
	}
	self := n.keys.account.ID()
	m, err := filecrypt.Encrypt(n.rand, bytes.NewReader(content), int64(len(content)), func(_ int, _ filecrypt.Hash, ct []byte) error {
		_, err := n.files.store.Add(tok, self, ct)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Name, m.Mime = "photo.jpg", mime
	raw, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(raw)
	ref := photoRef{Manifest: raw, Token: tok[:], Peer: n.host.ID().String()}
	if edit != nil {
		edit(&ref)
	}
	if _, err := n.changeGroup(group, func(tx *storage.Txn, l *groupstate.Log) ([]groupstate.Change, error) {
		key, err := n.infoEditKey(tx, l)
		if err != nil {
			return nil, err
		}
		text, err := json.Marshal(ref)
		if err != nil {
			return nil, err
		}
		sealed, err := sealInfo(key, string(text))
		if err != nil {
			return nil, err
		}
		return []groupstate.Change{{Kind: groupstate.KindPhoto, Ref: sum, Text: sealed}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(sum[:])
}

// review15Group: Alice (owner) and Bob in a group, both on one relay.
func review15Group(t *testing.T, mod func(*Config)) (*testRelay, *testNode, *testNode, string, groupstate.GroupID) {
	t.Helper()
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, mod, relay.addr)
	bob := startNodeWith(t, bobHome, mod, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "r15")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob"}); err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	eventually(t, "Bob in the group", holdsEntry(bob, group, alice.reloadGroup(t, group).Head()))
	return relay, alice, bob, g.ID, group
}

func review15Record(n *testNode, id string) *fileRecord {
	var rec *fileRecord
	_ = n.db.View(func(tx *storage.Txn) (err error) { rec, err = n.getFile(tx, id); return err })
	return rec
}

// TestReview15NonJPEGPhotoRefetchedForever: an admin seals a photo
// reference to bytes that are not a JPEG (claimed image/jpeg, under
// 1 MiB). Bob's node fetches it, finds it is no JPEG and removes it —
// but puts the record back to "available", so the file loop's
// autoDownload fetches it again once a minute, forever (every member of
// the group, from the admin's node or the relay). Failed at review; fixed (a refused automatic download is not retried unasked).
func TestReview15NonJPEGPhotoRefetchedForever(t *testing.T) {
	_, alice, bob, gid, _ := review15Group(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evs := bob.Subscribe(ctx)
	html := []byte("<html><script>alert(1)</script>" + strings.Repeat("x", 200_000) + "</html>")
	id := review15SealPhoto(t, alice, gid, html, "image/jpeg", nil)
	var fetches atomic.Int32
	go func() {
		for ev := range evs {
			if ev.Type == chat.EventFile && ev.File != nil && ev.File.ID == id && ev.File.State == chat.FileDownloading && ev.File.Done == 0 {
				fetches.Add(1)
			}
		}
	}()
	eventually(t, "Bob's node fetched and refused the photo", func() (bool, error) {
		rec := review15Record(bob, id)
		return rec != nil && rec.Error != "" && fetches.Load() >= 1, nil
	})
	rec := review15Record(bob, id)
	t.Logf("after the first fetch: state %s, error %q", rec.State, rec.Error)
	if _, err := os.Stat(filepath.Join(bob.home, "media", id+".jpg")); err == nil {
		t.Fatal("the non-JPEG stayed in DIR/media")
	}
	deadline := time.Now().Add(75 * time.Second)
	for time.Now().Before(deadline) && fetches.Load() < 2 {
		time.Sleep(200 * time.Millisecond)
	}
	if n := fetches.Load(); n >= 2 {
		t.Errorf("Bob's node fetched the non-JPEG photo %d times within ~75 s: the refused file is fetched again every minute, forever", n)
	}
}

// TestReview15PhotoRemovalDeletesNothing: the admin removes the group's
// photo (DELETE .../photo): the photo stays on every member's disk
// (DIR/media, and its file record listed among the group's files), and
// the setter's node keeps serving its chunks to the old token. Replacing
// a photo is the same: every photo ever set piles up. Failed at review; fixed (notePhoto drops the photo replaced).
func TestReview15PhotoRemovalDeletesNothing(t *testing.T) {
	fast := func(c *Config) { c.FileUploadAfter = 100 * time.Millisecond }
	_, alice, bob, gid, _ := review15Group(t, fast)
	ctx := context.Background()
	set, err := alice.SetGroupPhoto(ctx, gid, photoPNG(t, 200, 200))
	if err != nil {
		t.Fatal(err)
	}
	id := set.Photo
	eventually(t, "Bob has the photo", func() (bool, error) {
		rec := review15Record(bob, id)
		return rec != nil && rec.State == chat.FileDownloaded, nil
	})
	if _, err := alice.SetGroupPhoto(ctx, gid, nil); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the photo removed at Bob", func() (bool, error) {
		v, err := bob.Group(ctx, gid)
		return err == nil && v.Photo == "", err
	})
	time.Sleep(time.Second)
	var left []string
	if _, err := os.Stat(filepath.Join(bob.home, "media", id+".jpg")); err == nil {
		left = append(left, "Bob's DIR/media still holds the removed photo")
	}
	if files, _ := bob.Files(ctx, gid); len(files) > 0 {
		left = append(left, fmt.Sprintf("Bob's node lists %d file(s) of the group (the removed photo: %v)", len(files), files[0].ID == id))
	}
	if rec := review15Record(alice, id); rec != nil {
		left = append(left, "Alice's node keeps the record (state "+string(rec.State)+") and serves the chunks to the old token")
	}
	for _, s := range left {
		t.Error(s)
	}
}

// TestReview15PhotoReferenceDialsAnyAddress: the reference's relays are
// the setter's word. An admin names addresses of its choice — here a
// plain TCP listener standing for a host the admin watches, and, under
// the home relay's peer ID, the same address. Every member's node dials
// the address unasked (its IP to whoever the admin names) and keeps the
// admin's address in its peerstore for the relay's ID for an hour (each
// reconnection to its relay dials it too). Failed at review (low: the
// same as any group post's photo, but reaches every member with no
// post); the planting is fixed, the dial is a documented limit.
func TestReview15PhotoReferenceDialsAnyAddress(t *testing.T) {
	relay, alice, bob, gid, _ := review15Group(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var conns atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			c.Close()
		}
	}()
	_, pub, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	stranger, err := peer.IDFromPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	jpg, err := os.ReadFile(review15JPEG(t))
	if err != nil {
		t.Fatal(err)
	}
	relayID := relay.h.ID()
	review15SealPhoto(t, alice, gid, jpg, "image/jpeg", func(r *photoRef) {
		r.Peer = "" // not from the admin's own node: the named sources
		r.Relays = []string{
			fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", addr.Port, stranger),
			fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", addr.Port, relayID),
		}
	})
	// Fixed: the sender's addresses go only to peers the node knows no
	// address of. Left (documented in the threat model): the member's
	// node does dial a relay the setter names that it does not know, as
	// for any group file — where the chunks are is the setter's word.
	deadline := time.Now().Add(20 * time.Second)
	poisoned := false
	for time.Now().Before(deadline) && conns.Load() == 0 {
		time.Sleep(100 * time.Millisecond)
	}
	if conns.Load() == 0 {
		t.Fatal("Bob's node never tried the named sources: the test tests nothing")
	}
	time.Sleep(time.Second)
	for _, a := range bob.host.Peerstore().Addrs(relayID) {
		if strings.Contains(a.String(), fmt.Sprintf("/tcp/%d", addr.Port)) {
			poisoned = true
		}
	}
	if poisoned {
		t.Errorf("Bob's peerstore holds the admin's address for his home relay %s", relayID)
	}
}

func review15JPEG(t *testing.T) string {
	t.Helper()
	var b bytes.Buffer
	if _, err := media.PrepareAvatar(photoPNG(t, 64, 64), &b); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "p.jpg")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
