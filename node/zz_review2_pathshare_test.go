package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/blobs"
	"github.com/peergram/peergram/storage"
)

// review2Trio: Mallory (malicious, serves her own chunks only), Alice
// (honest) and Bob (the victim), all contacts of Bob.
func review2Trio(t *testing.T) (mal, alice, bob *testNode, bobHome string) {
	t.Helper()
	relay := startRelay(t, t.TempDir())
	malHome, malInfo := initHome(t, "mallory")
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	mal = startNodeWith(t, malHome, func(c *Config) { c.FileUploadAfter = time.Hour }, relay.addr)
	alice = startNodeWith(t, aliceHome, func(c *Config) { c.FileUploadAfter = time.Hour }, relay.addr)
	bob = startNode(t, bobHome, relay.addr)
	addEachOther(t, mal, bob, malInfo, bobInfo)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	return mal, alice, bob, bobHome
}

// review2BadFile: Mallory sends NAME whose last chunk is named but does
// not open (ErrAuth); Bob tries it once. It returns the message, the
// file's key and size, and the name of the bad chunk.
func review2BadFile(t *testing.T, mal, bob *testNode, name string) (chat.Message, filecrypt.Key, int64, [32]byte) {
	t.Helper()
	size := 2*filecrypt.ChunkSize + 1
	var key filecrypt.Key
	var bad [32]byte
	content := bytes.Repeat([]byte("M"), size)
	msg := reviewForgeSend(t, mal, "bob", name, content, func(m *filecrypt.Manifest, tok blobs.Token) {
		key = m.Key
		junk := make([]byte, 1+filecrypt.Overhead)
		rand.Read(junk)
		h, err := mal.files.store.Add(tok, mal.keys.account.ID(), junk)
		if err != nil {
			t.Fatal(err)
		}
		m.Chunks[len(m.Chunks)-1] = h
		bad = h
	}, chat.MessageID{})
	reviewWaitFile(t, bob, msg.ID)
	dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	_, err := bob.Download(dctx, msg.ID, "")
	cancel()
	if !errors.Is(err, filecrypt.ErrAuth) {
		t.Fatalf("the bad file: %v", err)
	}
	return msg, key, int64(size), bad
}

func review2WaitFrom(t *testing.T, bob *testNode, contact, id string) {
	t.Helper()
	eventually(t, "the file at Bob", func() (bool, error) {
		fs, err := bob.Files(context.Background(), contact)
		for _, f := range fs {
			if f.ID == id {
				return true, nil
			}
		}
		return false, err
	})
}

func review2Record(t *testing.T, n *testNode, id string) *fileRecord {
	t.Helper()
	var rec *fileRecord
	if err := n.db.View(func(tx *storage.Txn) (err error) { rec, err = n.getFile(tx, id); return err }); err != nil {
		t.Fatal(err)
	}
	return rec
}

// TestReview2RetryOverwritesOtherDownload: a file that failed with
// ErrAuth keeps its Path while its .part is removed; the name is then
// free, and an honest contact's file of the same name is downloaded to
// that very path. Retrying the failed file ("ours": it resumes in place,
// touchPart, no exclusive reservation) writes to the same .part and
// renames it over the honest file. The malicious sender serves, this
// time, a last chunk that opens under the key though it is not the one
// named (names are no longer checked on success).
func TestReview2RetryOverwritesOtherDownload(t *testing.T) {
	mal, alice, bob, bobHome := review2Trio(t)
	ctx := context.Background()
	dl := filepath.Join(bobHome, "downloads")
	msgA, key, size, bad := review2BadFile(t, mal, bob, "report.pdf")
	recA := review2Record(t, bob, msgA.ID)
	t.Logf("after the failure: A state %s path %s", recA.State, recA.Path)

	// Alice's honest report.pdf.
	src := filepath.Join(t.TempDir(), "report.pdf")
	honest := make([]byte, 3*filecrypt.ChunkSize+5)
	rand.Read(honest)
	if err := os.WriteFile(src, honest, 0o600); err != nil {
		t.Fatal(err)
	}
	msgB, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: src, AsFile: true})
	if err != nil {
		t.Fatal(err)
	}
	review2WaitFrom(t, bob, "alice", msgB.ID)
	dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	gotB, err := bob.Download(dctx, msgB.ID, "")
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Alice's file downloaded to %s (A's recorded path %s)", gotB.Path, recA.Path)

	// Mallory now serves a last chunk that opens.
	ct, _, err := filecrypt.SealChunk(nil, key, size, filecrypt.ChunkCount(size)-1, []byte("!"))
	if err != nil {
		t.Fatal(err)
	}
	p := mal.files.store.BlobPath(bad)
	_ = os.Chmod(p, 0o600)
	if err := os.WriteFile(p, ct, 0o600); err != nil {
		t.Fatal(err)
	}
	// Bob retries Mallory's failed file. (The chunk no longer matches
	// its name: it is fetched again until the caller gives up.)
	dctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	gotA, errA := bob.Download(dctx, msgA.ID, "")
	cancel()
	t.Logf("retry of Mallory's file: path %q err %v", gotA.Path, errA)
	now, err := os.ReadFile(gotB.Path)
	if err != nil {
		t.Fatalf("ATTACK WORKS: Alice's downloaded file is gone: %v", err)
	}
	if !bytes.Equal(now, honest) {
		t.Fatalf("ATTACK WORKS: Alice's downloaded %s (recorded Downloaded) now holds Mallory's %d bytes starting %q, not Alice's %d bytes (dir %s)",
			filepath.Base(gotB.Path), len(now), now[:4], len(honest), dl)
	}
}

// TestReview2DeletionEmptiesOtherPart: the same shared path, and
// Mallory deletes her failed file "for everyone": fileDeleteTx removes
// PATH.part — Alice's interrupted download's. Bob's resume recreates an
// empty .part (touchPart), trusts Done, writes the rest and truncates:
// the file reported Downloaded starts with zeros instead of Alice's
// bytes.
func TestReview2DeletionEmptiesOtherPart(t *testing.T) {
	mal, alice, bob, _ := review2Trio(t)
	ctx := context.Background()
	msgA, _, _, _ := review2BadFile(t, mal, bob, "report.pdf")

	src := filepath.Join(t.TempDir(), "report.pdf")
	honest := make([]byte, 96*filecrypt.ChunkSize+5)
	rand.Read(honest)
	if err := os.WriteFile(src, honest, 0o600); err != nil {
		t.Fatal(err)
	}
	msgB, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: src, AsFile: true})
	if err != nil {
		t.Fatal(err)
	}
	review2WaitFrom(t, bob, "alice", msgB.ID)
	// Bob's client stops the download partway (Ctrl-C).
	dctx, cancel := context.WithCancel(ctx)
	go func() {
		// Once a few chunks are in the .part (the deferred save records
		// them when the download stops).
		for i := 0; i < 2000; i++ {
			time.Sleep(time.Millisecond)
			var rec *fileRecord
			_ = bob.db.View(func(tx *storage.Txn) (err error) { rec, err = bob.getFile(tx, msgB.ID); return err })
			if rec != nil && rec.State == chat.FileDownloading && rec.Path != "" {
				if fi, err := os.Stat(rec.Path + ".part"); err == nil && fi.Size() >= 4*filecrypt.ChunkSize {
					break
				}
			}
		}
		cancel()
	}()
	_, err = bob.Download(dctx, msgB.ID, "")
	cancel()
	recB := review2Record(t, bob, msgB.ID)
	t.Logf("interrupted: err %v, state %s, done %d of %d, path %s", err, recB.State, recB.Done, len(honest)/filecrypt.ChunkSize+1, recB.Path)
	if recB.State != chat.FileDownloading || recB.Done == 0 {
		t.Fatalf("setup: the download was not interrupted partway (%s, %d chunks)", recB.State, recB.Done)
	}
	if recA := review2Record(t, bob, msgA.ID); recA.Path != recB.Path {
		// Fixed: the failed download gave its path up, so no deletion of
		// it touches Alice's .part. Her .part removed anyway (by hand, a
		// disk tool): the resume must start over, not fill a gap with
		// zeros.
		t.Logf("paths differ (%q vs %q): the deletion cannot reach Alice's .part; removing it directly", recA.Path, recB.Path)
		if err := os.Remove(recB.Path + ".part"); err != nil {
			t.Fatal(err)
		}
		got, err := bob.Download(ctx, msgB.ID, "")
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(got.Path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, honest) {
			t.Fatalf("ATTACK WORKS: a resume into a .part removed meanwhile gave a file that differs (first bytes %x)", b[:8])
		}
		return
	}
	// Mallory deletes her file for everyone.
	if err := mal.DeleteFile(ctx, msgA.ID, true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Mallory's file gone at Bob", func() (bool, error) {
		fs, err := bob.Files(ctx, "mallory")
		return err == nil && len(fs) == 0, err
	})
	if _, err := os.Stat(recB.Path + ".part"); err != nil {
		t.Errorf("ATTACK WORKS: Mallory's deletion of her file removed Alice's .part: %v", err)
	}
	dctx2, cancel2 := context.WithTimeout(ctx, 60*time.Second)
	got, err := bob.Download(dctx2, msgB.ID, "")
	cancel2()
	if err != nil {
		t.Logf("resume: %v", err)
		return
	}
	now, err := os.ReadFile(got.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(now, honest) {
		zeros := 0
		for zeros < len(now) && now[zeros] == 0 {
			zeros++
		}
		t.Fatalf("ATTACK WORKS: Alice's file, state %s at %s, differs from what she sent: its first %d bytes are zeros (%d chunks recorded before the .part was removed by Mallory's deletion)", got.State, got.Path, zeros, recB.Done)
	}
}
