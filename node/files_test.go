package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"image"
	"image/jpeg"
	"image/png"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// writeFile writes n random bytes with a marker at the start and returns
// the path and the content's SHA-256.
func writeFile(t *testing.T, n int) (string, [32]byte) {
	t.Helper()
	b := make([]byte, n)
	rand.Read(b)
	copy(b, []byte(testMarker))
	p := filepath.Join(t.TempDir(), "report.bin")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p, sha256.Sum256(b)
}

func fileSum(t *testing.T, p string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// TestFileDirect: Alice sends a file to Bob, both online; the source is
// deleted at once (the chunks are in Alice's store); Bob downloads it
// from Alice's node — no blob ever reaches the relay — and gets the same
// bytes. The file's listing shows it on both sides.
func TestFileDirect(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, func(c *Config) { c.FileUploadAfter = time.Hour }, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	path, sum := writeFile(t, 3*filecrypt.ChunkSize+12345)
	msg, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: path, Caption: "the report"})
	if err != nil {
		t.Fatal(err)
	}
	if msg.File == nil || msg.File.Name != "report.bin" || msg.File.Size != 3*filecrypt.ChunkSize+12345 || msg.Text != "the report" {
		t.Fatalf("message %+v", msg)
	}
	os.Remove(path)
	var files []chat.File
	eventually(t, "the file at Bob", func() (bool, error) {
		files, err = bob.Files(ctx, "alice")
		return err == nil && len(files) == 1, err
	})
	if f := files[0]; f.ID != msg.ID || f.State != chat.FileAvailable || f.Mime != "application/octet-stream" || f.Outgoing {
		t.Fatalf("Bob's listing %+v", f)
	}
	out := filepath.Join(t.TempDir(), "got.bin")
	got, err := bob.Download(ctx, msg.ID, out)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != chat.FileDownloaded || got.Path != out || fileSum(t, out) != sum {
		t.Fatalf("downloaded %+v", got)
	}
	if _, total := relay.blobs.Usage(alice.keys.account.ID()); total != 0 {
		t.Fatalf("%d bytes went to the relay for a direct transfer", total)
	}
	eventually(t, "Alice sees it fetched", func() (bool, error) {
		fs, err := alice.Files(ctx, "bob")
		return err == nil && len(fs) == 1 && fs[0].State == chat.FileUploaded, err
	})
	// Both chats' histories say what the message carries (the web
	// client draws the file from it after a reload).
	for who, n := range map[string]*testNode{"alice": alice, "bob": bob} {
		peer := map[string]string{"alice": "bob", "bob": "alice"}[who]
		ms, err := n.Messages(ctx, peer, false)
		if err != nil {
			t.Fatal(err)
		}
		if len(ms) != 1 || ms[0].File == nil || ms[0].File.Name != "report.bin" || ms[0].File.Size != msg.File.Size || ms[0].Text != "the report" {
			t.Fatalf("%s's history %+v", who, ms)
		}
	}
}

// TestFileThroughRelay: Bob is offline; Alice's file goes to the relay;
// Alice stops; Bob starts and downloads it from the relay alone. The
// marker written through the file is in no file of the relay's data.
func TestFileThroughRelay(t *testing.T) {
	relayDir := t.TempDir()
	relay := startRelay(t, relayDir)
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, func(c *Config) { c.FileUploadAfter = 200 * time.Millisecond }, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	bob.stop()
	ctx := context.Background()
	path, sum := writeFile(t, 2*filecrypt.ChunkSize+7)
	msg, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "uploaded", func() (bool, error) {
		fs, err := alice.Files(ctx, "bob")
		return err == nil && len(fs) == 1 && fs[0].State == chat.FileUploaded, err
	})
	eventually(t, "the message at the relay", func() (bool, error) {
		st := statusOf(t, alice, "bob")[""] // (keyed by text: the file has no caption)
		return st == chat.StatusSent || st == chat.StatusDelivered, nil
	})
	alice.stop()
	bob = startNode(t, bobHome, relay.addr)
	eventually(t, "the file at Bob", func() (bool, error) {
		fs, err := bob.Files(ctx, "alice")
		return err == nil && len(fs) == 1, err
	})
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	got, err := bob.Download(dctx, msg.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if fileSum(t, got.Path) != sum || filepath.Dir(got.Path) != filepath.Join(bobHome, "downloads") {
		t.Fatalf("downloaded %+v", got)
	}
	relay.close()
	assertNoMarker(t, relayDir)
}

// TestFileRefusals: over 2 GiB is refused before anything is encrypted;
// an unknown contact, a directory, a missing file; a download of a file
// one sent or of no file.
func TestFileRefusals(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNode(t, aliceHome, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	big := filepath.Join(t.TempDir(), "big.iso")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(filecrypt.MaxFileSize + 1); err != nil { // sparse
		t.Fatal(err)
	}
	f.Close()
	if _, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: big}); !errors.Is(err, chat.ErrTooLarge) {
		t.Fatalf("2 GiB + 1: %v", err)
	}
	small, _ := writeFile(t, 10)
	for name, c := range map[string]struct {
		contact, path string
		want          error
	}{
		"unknown contact": {"carol", small, chat.ErrUnknownContact},
		"a directory":     {"bob", t.TempDir(), chat.ErrInvalid},
		"no such file":    {"bob", filepath.Join(t.TempDir(), "none"), chat.ErrInvalid},
	} {
		if _, err := alice.SendFile(ctx, chat.FileSend{Chat: c.contact, Path: c.path}); !errors.Is(err, c.want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, total := alice.files.store.Usage(alice.keys.account.ID()); total != 0 {
		t.Fatalf("refused sends left %d bytes of chunks", total)
	}
	msg, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: small})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Download(ctx, msg.ID, ""); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("downloading one's own: %v", err)
	}
	if _, err := bob.Download(ctx, "00", ""); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("no such file: %v", err)
	}
}

// TestFileBadChunksRefetched: Alice's node serves a corrupted chunk and
// another file's chunk in place of two of this file's; Bob's node refuses
// both and fetches them from the relay (which holds the file too), and
// the file comes out whole.
func TestFileBadChunksRefetched(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, func(c *Config) { c.FileUploadAfter = 100 * time.Millisecond }, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	path, sum := writeFile(t, 3*filecrypt.ChunkSize+99)
	other, _ := writeFile(t, 2*filecrypt.ChunkSize)
	msg, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "uploaded", func() (bool, error) {
		fs, err := alice.Files(ctx, "bob")
		return err == nil && len(fs) == 1 && fs[0].State == chat.FileUploaded, err
	})
	otherMsg, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: other})
	if err != nil {
		t.Fatal(err)
	}
	var m, om *filecrypt.Manifest
	if err := alice.db.View(func(tx *storage.Txn) error {
		r, err := alice.getFile(tx, msg.ID)
		if err != nil {
			return err
		}
		if m, err = r.manifest(); err != nil {
			return err
		}
		r2, err := alice.getFile(tx, otherMsg.ID)
		if err != nil {
			return err
		}
		om, err = r2.manifest()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	store := alice.files.store
	good, err := os.ReadFile(store.BlobPath(m.Chunks[0]))
	if err != nil {
		t.Fatal(err)
	}
	good[10] ^= 1
	if err := os.WriteFile(store.BlobPath(m.Chunks[0]), good, 0o600); err != nil {
		t.Fatal(err)
	}
	foreign, err := os.ReadFile(store.BlobPath(om.Chunks[1]))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(store.BlobPath(m.Chunks[1]), foreign, 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the file at Bob", func() (bool, error) {
		fs, err := bob.Files(ctx, "alice")
		return err == nil && len(fs) >= 1, err
	})
	dctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	got, err := bob.Download(dctx, msg.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if fileSum(t, got.Path) != sum {
		t.Fatal("the file differs")
	}
}

// TestFileInGroup: a file posted in a group reaches every member, who
// download it (the sender's node serves it, the relay has it too).
func TestFileInGroup(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	nodes, _, g := threeInEpochGroup(t, relay)
	alice := nodes["alice"]
	ctx := context.Background()
	path, sum := writeFile(t, filecrypt.ChunkSize+5)
	msg, err := alice.SendFile(ctx, chat.FileSend{Chat: g.ID, Path: path, Caption: "for all"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bob", "carol"} {
		n := nodes[name]
		eventually(t, "the file at "+name, func() (bool, error) {
			fs, err := n.Files(ctx, g.ID)
			return err == nil && len(fs) == 1 && fs[0].ID == msg.ID, err
		})
		got, err := n.Download(ctx, msg.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		if fileSum(t, got.Path) != sum {
			t.Fatalf("%s's copy differs", name)
		}
		ms, err := n.GroupMessages(ctx, g.ID)
		if err != nil || len(ms) != 1 || ms[0].File == nil || ms[0].File.Name != "report.bin" || ms[0].Text != "for all" {
			t.Fatalf("%s's group messages: %+v (%v)", name, ms, err)
		}
	}

	// Deleting for everyone: only the sender. Bob's node refuses; Bob's
	// node, modified, posts the deletion anyway: Carol keeps the file.
	bob, carol := nodes["bob"], nodes["carol"]
	if err := bob.DeleteFile(ctx, msg.ID, true); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("a member deleting another's file for everyone: %v", err)
	}
	if _, err := bob.postGroup(ctx, g.ID, &groupBody{DeleteFile: msg.ID}, nil); err != nil {
		t.Fatal(err)
	}
	after, err := bob.SendGroup(ctx, g.ID, "after my forged deletion")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob's text at Carol", func() (bool, error) {
		ms, err := carol.GroupMessages(ctx, g.ID)
		for _, m := range ms {
			if m.ID == after.ID {
				return true, nil
			}
		}
		return false, err
	})
	if fs, err := carol.Files(ctx, g.ID); err != nil || len(fs) != 1 {
		t.Fatalf("ATTACK WORKS: Bob deleted Alice's file at Carol: %+v (%v)", fs, err)
	}
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	carolEvents := carol.Subscribe(sctx)
	if err := alice.DeleteFile(ctx, msg.ID, true); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bob", "carol"} {
		n := nodes[name]
		eventually(t, "the file gone at "+name, func() (bool, error) {
			fs, err := n.Files(ctx, g.ID)
			return err == nil && len(fs) == 0, err
		})
	}
	for deleted := false; !deleted; {
		select {
		case ev := <-carolEvents:
			deleted = ev.Type == chat.EventFile && ev.File.ID == msg.ID && ev.File.State == chat.FileDeleted
		case <-time.After(10 * time.Second):
			t.Fatal("no file event for the deletion at Carol")
		}
	}
}

// TestFilePhoto: a photo is sent compressed (JPEG, metadata gone, a
// thumbnail in the message); with --as-file its own bytes go.
func TestFilePhoto(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, func(c *Config) { c.FileUploadAfter = time.Hour }, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	img := image.NewRGBA(image.Rect(0, 0, 3000, 2000))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 7)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	b.WriteString("tEXt" + testMarker) // trailing bytes after IEND: not pixels
	path := filepath.Join(t.TempDir(), "holiday.png")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	msg, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	if f := msg.File; f == nil || f.Kind != "photo" || f.Name != "holiday.jpg" || f.Mime != "image/jpeg" || f.Width != 2560 || f.Height != 1706 || !f.HasThumb {
		t.Fatalf("the photo's message: %+v", msg.File)
	}
	var fs []chat.File
	eventually(t, "the photo at Bob", func() (bool, error) {
		fs, err = bob.Files(ctx, "alice")
		return err == nil && len(fs) == 1, err
	})
	if len(fs[0].Thumb) == 0 || fs[0].Kind != "photo" {
		t.Fatalf("Bob's listing: kind %q, %d bytes of thumbnail", fs[0].Kind, len(fs[0].Thumb))
	}
	got, err := bob.Download(ctx, msg.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(got.Path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(data, []byte(testMarker)) {
		t.Fatal("the original's extra bytes went with the photo")
	}
	if _, err := jpeg.DecodeConfig(bytes.NewReader(data)); err != nil {
		t.Fatalf("not a JPEG: %v", err)
	}
	orig, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: path, AsFile: true})
	if err != nil {
		t.Fatal(err)
	}
	if f := orig.File; f.Name != "holiday.png" || f.Size != int64(b.Len()) || f.Mime != "image/png" || f.Kind != "file" {
		t.Fatalf("--as-file: %+v", f)
	}
}

// TestFileAutoDownload: a small photo downloads by itself; a larger
// file waits to be asked.
func TestFileAutoDownload(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, func(c *Config) { c.FileUploadAfter = time.Hour }, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	var b bytes.Buffer
	if err := png.Encode(&b, image.NewRGBA(image.Rect(0, 0, 200, 100))); err != nil {
		t.Fatal(err)
	}
	photo := filepath.Join(t.TempDir(), "small.png")
	if err := os.WriteFile(photo, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	big, _ := writeFile(t, 3<<20)
	pm, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: photo})
	if err != nil {
		t.Fatal(err)
	}
	bm, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: big})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the photo downloaded by itself", func() (bool, error) {
		fs, err := bob.Files(ctx, "alice")
		if err != nil || len(fs) != 2 {
			return false, err
		}
		for _, f := range fs {
			if f.ID == pm.ID && f.State == chat.FileDownloaded {
				return true, nil
			}
		}
		return false, nil
	})
	time.Sleep(1500 * time.Millisecond)
	fs, err := bob.Files(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fs {
		if f.ID == bm.ID && f.State != chat.FileAvailable {
			t.Fatalf("the 3 MB file is %s without being asked", f.State)
		}
	}
}

// TestFileDelete: Bob deletes a received file for himself (Alice keeps
// hers); Alice deletes another for everyone: it leaves Bob's chat and the
// relay's store. Bob cannot delete Alice's file for everyone.
func TestFileDelete(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, func(c *Config) { c.FileUploadAfter = 100 * time.Millisecond }, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	p1, _ := writeFile(t, 100)
	p2, _ := writeFile(t, filecrypt.ChunkSize+1)
	m1, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: p1})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: p2})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "both at Bob, both on the relay", func() (bool, error) {
		fs, err := bob.Files(ctx, "alice")
		af, _ := alice.Files(ctx, "bob")
		up := 0
		for _, f := range af {
			if f.State == chat.FileUploaded {
				up++
			}
		}
		return err == nil && len(fs) == 2 && up == 2, err
	})
	if err := bob.DeleteFile(ctx, m2.ID, true); !errors.Is(err, chat.ErrInvalid) {
		t.Fatalf("a recipient deleting for everyone: %v", err)
	}
	if err := bob.DeleteFile(ctx, m1.ID, false); err != nil {
		t.Fatal(err)
	}
	if fs, _ := bob.Files(ctx, "alice"); len(fs) != 1 || fs[0].ID != m2.ID {
		t.Fatalf("Bob's files after deleting one: %+v", fs)
	}
	if fs, _ := alice.Files(ctx, "bob"); len(fs) != 2 {
		t.Fatalf("Alice's files after Bob deleted his copy: %d", len(fs))
	}
	_, before := relay.blobs.Usage(alice.keys.account.ID())
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	bobEvents := bob.Subscribe(sctx)
	if err := alice.DeleteFile(ctx, m2.ID, true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "gone from Bob's chat", func() (bool, error) {
		fs, err := bob.Files(ctx, "alice")
		return err == nil && len(fs) == 0, err
	})
	// Bob's clients hear of it (the event stream).
	for deleted := false; !deleted; {
		select {
		case ev := <-bobEvents:
			deleted = ev.Type == chat.EventFile && ev.File.ID == m2.ID && ev.File.State == chat.FileDeleted
		case <-time.After(10 * time.Second):
			t.Fatal("no file event for the deletion at Bob")
		}
	}
	if _, after := relay.blobs.Usage(alice.keys.account.ID()); after >= before || after != 100+filecrypt.Overhead {
		t.Fatalf("the relay holds %d bytes (was %d): the deleted file's blobs stayed", after, before)
	}
	if fs, _ := alice.Files(ctx, "bob"); len(fs) != 1 || fs[0].ID != m1.ID {
		t.Fatalf("Alice's files: %+v", fs)
	}
	// Bob's node, modified, asks Alice's to delete the file Alice sent:
	// only a file's sender deletes it.
	body, err := json.Marshal(payload{Kind: "file-delete", IDs: []string{m1.ID}})
	if err != nil {
		t.Fatal(err)
	}
	var mid chat.MessageID
	rand.Read(mid[:])
	if err := bob.db.Update(func(tx *storage.Txn) error {
		return bob.enqueue(tx, &job{ID: mid, To: alice.keys.account.ID(), Payload: body, SentAt: time.Now().UnixMilli()})
	}); err != nil {
		t.Fatal(err)
	}
	bob.notify(alice.keys.account.ID())
	eventually(t, "Bob's request delivered", func() (bool, error) {
		var left int
		err := bob.db.View(func(tx *storage.Txn) (err error) { left, err = tx.Count(bob.st.outbox, nil); return err })
		return err == nil && left == 0, err
	})
	time.Sleep(300 * time.Millisecond)
	if fs, _ := alice.Files(ctx, "bob"); len(fs) != 1 || fs[0].ID != m1.ID {
		t.Fatalf("a recipient's deletion request took the sender's file: %+v", fs)
	}
}

// TestFileDownloadGivesUp: a download whose sources never answer (the
// sender gone, no relay holds the file) returns as soon as its caller
// gives up — every time (the fetchers stop without a word once the
// context is done; a loop that waited for their word hung).
func TestFileDownloadGivesUp(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, func(c *Config) { c.FileUploadAfter = time.Hour }, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	p, _ := writeFile(t, 1000)
	msg, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: p, AsFile: true})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the file at Bob", func() (bool, error) {
		fs, err := bob.Files(ctx, "alice")
		return err == nil && len(fs) == 1, err
	})
	alice.stop()
	for i := range 12 {
		dctx, cancel := context.WithTimeout(ctx, 150*time.Millisecond)
		done := make(chan error, 1)
		go func() { _, err := bob.Download(dctx, msg.ID, ""); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("downloaded from nowhere")
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("attempt %d: the download did not return after its context ended", i+1)
		}
		cancel()
	}
}

// TestFileInChannel: a channel's admin posts a photo; a subscriber gets
// it with its thumbnail — downloaded by itself, being a small photo —
// and fetches it whole from the relay after the admin has gone; a
// subscriber cannot post a file to the channel.
func TestFileInChannel(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	bobHome, _ := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, func(c *Config) { c.FileUploadAfter = 100 * time.Millisecond }, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	ctx := context.Background()
	ch, err := alice.CreateChannel(ctx, "Photos")
	if err != nil {
		t.Fatal(err)
	}
	inv, err := alice.CreateInvite(ctx, ch.ID, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob subscribes", func() (bool, error) {
		_, err := bob.JoinGroup(ctx, inv.Link)
		return err == nil, nil
	})
	eventually(t, "Bob subscribed at Alice", func() (bool, error) {
		got, err := alice.Group(ctx, ch.ID)
		return err == nil && got.Subscribers == 2, nil
	})
	img := image.NewRGBA(image.Rect(0, 0, 800, 600))
	for i := range img.Pix {
		img.Pix[i] = byte(i * 13)
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "view.png")
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	msg, err := alice.SendFile(ctx, chat.FileSend{Chat: ch.ID, Path: path, Caption: "the view"})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "uploaded to the relay", func() (bool, error) {
		fs, err := alice.Files(ctx, ch.ID)
		return err == nil && len(fs) == 1 && fs[0].State == chat.FileUploaded, err
	})
	alice.stop()
	var got chat.File
	eventually(t, "the photo downloaded at Bob by itself", func() (bool, error) {
		fs, err := bob.Files(ctx, ch.ID)
		if err != nil || len(fs) != 1 || fs[0].ID != msg.ID {
			return false, err
		}
		got = fs[0]
		return got.State == chat.FileDownloaded, nil
	})
	if got.Kind != "photo" || len(got.Thumb) == 0 || got.Width != 800 {
		t.Fatalf("the photo at Bob: kind %q, %d-byte thumbnail, width %d", got.Kind, len(got.Thumb), got.Width)
	}
	if cfg, err := jpeg.DecodeConfig(mustOpen(t, got.Path)); err != nil || cfg.Width != 800 {
		t.Fatalf("the downloaded photo: %v (%+v)", err, cfg)
	}
	if _, err := bob.SendFile(ctx, chat.FileSend{Chat: ch.ID, Path: path}); err == nil {
		t.Fatal("a subscriber posted a file to the channel")
	}
}

func mustOpen(t *testing.T, p string) *os.File {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}
