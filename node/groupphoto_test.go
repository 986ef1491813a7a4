package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"image"
	"image/jpeg"
	"image/png"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/blobs"
	"github.com/peergram/peergram/storage"
)

// photoPNG is a w × h PNG with varied pixels.
func photoPNG(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = byte(i*13 + i/w)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

// dirHolds reports whether a file under dir holds b.
func dirHolds(t *testing.T, dir string, b []byte) bool {
	t.Helper()
	found := false
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err == nil && bytes.Contains(data, b) {
			found = true
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return found
}

// TestGroupPhoto: the owner sets a group photo; a member online fetches
// it, and one that was offline fetches it from the relay after the
// owner went offline; it is a square JPEG, the same bytes everywhere,
// and the relay holds none of them in the clear. A member without the
// right to change the info cannot set one. The owner removes it; after
// a removal, the removed member cannot open the next photo's reference.
func TestGroupPhoto(t *testing.T) {
	relayDir := t.TempDir()
	relay := startRelay(t, relayDir)
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	carolHome, carolInfo := initHome(t, "carol")
	fast := func(c *Config) { c.FileUploadAfter = 100 * time.Millisecond }
	alice := startNodeWith(t, aliceHome, fast, relay.addr)
	bob := startNodeWith(t, bobHome, fast, relay.addr)
	carol := startNodeWith(t, carolHome, fast, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	addEachOther(t, alice, carol, aliceInfo, carolInfo)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "photos")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.AddGroupMembers(ctx, g.ID, []string{"bob", "carol"}); err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	group := groupstate.GroupID(raw)
	head := alice.reloadGroup(t, group).Head()
	eventually(t, "Bob in the group", holdsEntry(bob, group, head))
	eventually(t, "Carol in the group", holdsEntry(carol, group, head))

	if _, err := carol.SetGroupPhoto(ctx, g.ID, photoPNG(t, 100, 100)); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("a member without the right sets the photo: %v", err)
	}
	if _, err := alice.SetGroupPhoto(ctx, g.ID, []byte("not an image")); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("a photo that is not an image: %v", err)
	}
	carol.stop()

	set, err := alice.SetGroupPhoto(ctx, g.ID, photoPNG(t, 900, 600))
	if err != nil {
		t.Fatal(err)
	}
	if set.Photo == "" {
		t.Fatal("no photo in the group's view after setting one")
	}
	jpg, err := alice.GroupPhoto(ctx, g.ID)
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(jpg))
	if err != nil {
		t.Fatal(err)
	}
	if b := img.Bounds(); b.Dx() != 600 || b.Dy() != 600 {
		t.Fatalf("the photo is %d × %d, want 600 × 600", b.Dx(), b.Dy())
	}
	fetched := func(n *testNode) func() (bool, error) {
		return func() (bool, error) {
			v, err := n.Group(ctx, g.ID)
			if err != nil || v.Photo != set.Photo {
				return false, err
			}
			// Fetched unasked (notePhoto, the file loop), not by the
			// GroupPhoto call below.
			var rec *fileRecord
			if err := n.db.View(func(tx *storage.Txn) (err error) { rec, err = n.getFile(tx, set.Photo); return err }); err != nil || rec.State != chat.FileDownloaded {
				return false, nil
			}
			got, err := n.GroupPhoto(ctx, g.ID)
			return err == nil && bytes.Equal(got, jpg), err
		}
	}
	eventually(t, "Bob has the photo", fetched(bob))
	eventually(t, "the photo at the relay", func() (bool, error) {
		var rec *fileRecord
		err := alice.db.View(func(tx *storage.Txn) (err error) { rec, err = alice.getFile(tx, set.Photo); return err })
		return err == nil && rec.State == chat.FileUploaded, err
	})
	alice.stop()
	carol = startNodeWith(t, carolHome, fast, relay.addr)
	eventually(t, "Carol, offline meanwhile, has the photo from the relay", fetched(carol))
	if dirHolds(t, relayDir, jpg[len(jpg)/2:len(jpg)/2+64]) {
		t.Fatal("the relay's data directory holds the photo's bytes")
	}

	alice = startNodeWith(t, aliceHome, fast, relay.addr)
	if _, err := alice.SetGroupPhoto(ctx, g.ID, nil); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{bob, carol} {
		eventually(t, "the photo removed", func() (bool, error) {
			v, err := n.Group(ctx, g.ID)
			if err != nil || v.Photo != "" {
				return false, err
			}
			p, err := n.GroupPhoto(ctx, g.ID)
			return p == nil, err
		})
	}

	if _, err := alice.RemoveGroupMember(ctx, g.ID, "carol"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SetGroupPhoto(ctx, g.ID, photoPNG(t, 300, 300)); err != nil {
		t.Fatal(err)
	}
	st := alice.reloadGroup(t, group).State()
	if err := carol.db.View(func(tx *storage.Txn) error {
		if carol.openPhoto(tx, st) != nil {
			t.Error("Carol, removed, opens the reference of the photo set after")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob has the new photo", func() (bool, error) {
		v, err := bob.Group(ctx, g.ID)
		return err == nil && v.Photo == hex.EncodeToString(st.Photo[:]), err
	})
}

// TestGroupPhotoReferenceChecks: a photo reference a node does not open
// (an admin's node could seal anything): one not bound to the entry's
// hash, a file over maxAvatarBytes, a file that is not a JPEG, text
// that is not a reference.
func TestGroupPhotoReferenceChecks(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	g, err := alice.CreateGroup(context.Background(), "checks")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := hex.DecodeString(g.ID)
	st := alice.reloadGroup(t, groupstate.GroupID(raw)).State().Clone()
	manifest := func(size int64, mime string) []byte {
		m := &filecrypt.Manifest{Size: size, Name: "photo.jpg", Mime: mime, Chunks: make([]filecrypt.Hash, (size+filecrypt.ChunkSize-1)/filecrypt.ChunkSize)}
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := manifest(50_000, "image/jpeg")
	tests := []struct {
		name string
		ref  any
		hash []byte
		ok   bool
	}{
		{"good", photoRef{Manifest: good, Token: make([]byte, 32)}, good, true},
		{"hash of another manifest", photoRef{Manifest: good, Token: make([]byte, 32)}, manifest(50_001, "image/jpeg"), false},
		{"over the bound", photoRef{Manifest: manifest(maxAvatarBytes+1, "image/jpeg"), Token: make([]byte, 32)}, manifest(maxAvatarBytes+1, "image/jpeg"), false},
		{"not a JPEG", photoRef{Manifest: manifest(50_000, "text/html"), Token: make([]byte, 32)}, manifest(50_000, "text/html"), false},
		{"short token", photoRef{Manifest: good, Token: make([]byte, 8)}, good, false},
		{"not a reference", "a title", good, false},
	}
	for _, tc := range tests {
		text, err := json.Marshal(tc.ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := alice.db.View(func(tx *storage.Txn) error {
			keys, err := alice.infoKeys(tx, st.Group)
			if err != nil {
				return err
			}
			st.Photo = sha256.Sum256(tc.hash)
			if st.PhotoRef, err = sealInfo(keys[len(keys)-1], string(text)); err != nil {
				return err
			}
			if got := alice.openPhoto(tx, st) != nil; got != tc.ok {
				t.Errorf("%s: opened %v, want %v", tc.name, got, tc.ok)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzParsePhotoRef: whatever an admin's node sealed, parsing it never
// panics, and what it accepts is bound to the hash and bounded.
func FuzzParsePhotoRef(f *testing.F) {
	m := &filecrypt.Manifest{Size: 50_000, Name: "photo.jpg", Mime: "image/jpeg", Chunks: make([]filecrypt.Hash, 1)}
	good, err := m.MarshalBinary()
	if err != nil {
		f.Fatal(err)
	}
	text, _ := json.Marshal(photoRef{Manifest: good, Token: make([]byte, 32), Peer: "12D3KooW", Relays: []string{"/ip4/127.0.0.1/tcp/1/p2p/12D3KooW"}})
	f.Add(text, good)
	f.Add([]byte(`{"m":null}`), []byte{})
	f.Add([]byte(`[]`), []byte("x"))
	f.Fuzz(func(t *testing.T, text, manifest []byte) {
		hash := sha256.Sum256(manifest)
		ref, err := parsePhotoRef(text, hash)
		if err != nil {
			return
		}
		if sha256.Sum256(ref.Manifest) != hash || len(ref.Token) != 32 || len(ref.Relays) > 8 {
			t.Fatalf("accepted %+v", ref)
		}
		m, err := filecrypt.ParseManifest(ref.Manifest)
		if err != nil || m.Size > maxAvatarBytes || m.Mime != "image/jpeg" {
			t.Fatalf("accepted a manifest %+v (%v)", m, err)
		}
	})
}

// TestGroupPhotoRenewed: the relay keeps a blob for its retention after
// the last upload; the node that set a group's photo uploads it again
// every GroupPhotoRenew, so the relay still has it after its first
// retention ended (a member joining later fetches it there).
func TestGroupPhotoRenewed(t *testing.T) {
	const retention = 3 * time.Second
	relay := startRelayMods(t, t.TempDir(), relayMods{blobs: func(c *blobs.Config) { c.Retention = retention }})
	aliceHome, _ := initHome(t, "alice")
	alice := startNodeWith(t, aliceHome, func(c *Config) {
		c.FileUploadAfter = 100 * time.Millisecond
		c.GroupPhotoRenew = time.Second
	}, relay.addr)
	ctx := context.Background()
	g, err := alice.CreateGroup(ctx, "renewed")
	if err != nil {
		t.Fatal(err)
	}
	set, err := alice.SetGroupPhoto(ctx, g.ID, photoPNG(t, 200, 200))
	if err != nil {
		t.Fatal(err)
	}
	var rec *fileRecord
	eventually(t, "the photo at the relay", func() (bool, error) {
		err := alice.db.View(func(tx *storage.Txn) (err error) { rec, err = alice.getFile(tx, set.Photo); return err })
		return err == nil && rec.State == chat.FileUploaded, err
	})
	m, err := rec.manifest()
	if err != nil {
		t.Fatal(err)
	}
	c := blobs.NewClient(alice.host)
	held := func() bool {
		have, err := c.Has(ctx, relay.h.ID(), rec.token(), hashes(m.Chunks))
		return err == nil && len(have) == 1 && have[0]
	}
	if !held() {
		t.Fatal("the relay does not hold the photo after its upload")
	}
	time.Sleep(2 * retention)
	if !held() {
		t.Fatal("the relay dropped the photo: it was not uploaded again")
	}
}
