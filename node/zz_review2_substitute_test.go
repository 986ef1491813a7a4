package node

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/node/chat"
)

// TestReview2MemberAndRelaySubstituteGroupFile: Alice posts a file in a
// group of three; it goes to the relay and Alice goes offline. Carol, a
// member, holds the file's key (every member does); with the relay's
// operator (or being it) she replaces one chunk on the relay with other
// bytes sealed under that key at the same index. Bob downloads: every
// chunk opens, no name is checked on success and there is no whole-file
// hash any more, so Bob's node reports Alice's file downloaded while it
// holds Carol's bytes.
func TestReview2MemberAndRelaySubstituteGroupFile(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	nodes, _, g := threeInEpochGroup(t, relay)
	alice, bob, carol := nodes["alice"], nodes["bob"], nodes["carol"]
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "contract.txt")
	honest := bytes.Repeat([]byte("Alice pays Bob 10 EUR.\n"), (2*filecrypt.ChunkSize+100)/23)
	if err := os.WriteFile(src, honest, 0o600); err != nil {
		t.Fatal(err)
	}
	msg, err := alice.SendFile(ctx, chat.FileSend{Chat: g.ID, Path: src, AsFile: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []*testNode{bob, carol} {
		eventually(t, "the file at a member", func() (bool, error) {
			fs, err := n.Files(ctx, g.ID)
			return err == nil && len(fs) == 1, err
		})
	}
	// Alice uploads to the relay (her clock past FileUploadAfter), then
	// goes offline.
	alice.setClock(time.Minute)
	alice.wakeFiles()
	eventually(t, "the file on the relay", func() (bool, error) {
		fs, err := alice.Files(ctx, g.ID)
		return err == nil && len(fs) == 1 && fs[0].State == chat.FileUploaded, err
	})
	alice.stop()

	// Carol's knowledge: the manifest (key, size, names) from her copy.
	rec := review2Record(t, carol, msg.ID)
	m, err := rec.manifest()
	if err != nil {
		t.Fatal(err)
	}
	evil := bytes.Repeat([]byte("Alice pays Carol 9999 EUR.\n"), filecrypt.ChunkSize/27+1)[:filecrypt.ChunkSize]
	ct, _, err := filecrypt.SealChunk(nil, m.Key, m.Size, 0, evil)
	if err != nil {
		t.Fatal(err)
	}
	p := relay.blobs.BlobPath(m.Chunks[0])
	_ = os.Chmod(p, 0o600)
	if err := os.WriteFile(p, ct, 0o600); err != nil {
		t.Fatal(err)
	}

	// The substituted chunk does not match its name: it is fetched again
	// (from nowhere else here) until the caller gives up.
	dctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	got, err := bob.Download(dctx, msg.ID, "")
	cancel()
	if err != nil {
		t.Logf("refused: %v", err)
		return
	}
	b, err := os.ReadFile(got.Path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, honest) {
		t.Fatalf("ATTACK WORKS: Bob's copy of Alice's group file (state %s, from %s) starts %q — bytes Carol sealed with the group's copy of the key, accepted as Alice's", got.State, got.From, b[:27])
	}
}
