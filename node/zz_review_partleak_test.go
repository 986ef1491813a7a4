package node

import (
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/blobs"
)

// TestReviewFailedPartsAccumulate: a sender whose manifest names, as its
// last chunk, one that does not open under the file's key makes every
// download write the file's other chunks and then fail; were NAME.part
// left behind, the next attempt would pick "NAME (1)" and write it all
// again: each retry (a client retrying a failed download) would cost up
// to 2 GiB of the recipient's disk that nothing reclaims.
func TestReviewFailedPartsAccumulate(t *testing.T) {
	mal, bob, bobHome := reviewPair(t)
	ctx := context.Background()
	size := 3*filecrypt.ChunkSize + 1
	msg := reviewForgeSend(t, mal, "bob", "big.iso", make([]byte, size), func(m *filecrypt.Manifest, tok blobs.Token) {
		junk := make([]byte, 1+filecrypt.Overhead)
		rand.Read(junk)
		h, err := mal.files.store.Add(tok, mal.keys.account.ID(), junk)
		if err != nil {
			t.Fatal(err)
		}
		m.Chunks[len(m.Chunks)-1] = h
	}, chat.MessageID{})
	reviewWaitFile(t, bob, msg.ID)
	for i := 0; i < 3; i++ {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err := bob.Download(dctx, msg.ID, "")
		cancel()
		if err == nil {
			t.Fatal("a bad file was reported downloaded")
		}
	}
	var total int64
	var names []string
	entries, _ := os.ReadDir(filepath.Join(bobHome, "downloads"))
	for _, e := range entries {
		fi, _ := e.Info()
		total += fi.Size()
		names = append(names, e.Name())
	}
	t.Logf("downloads dir after 3 failed attempts: %q, %d bytes", names, total)
	if total > 0 {
		t.Fatalf("failed attempts of one %d-byte file left %d bytes in %d files: %q", size, total, len(names), names)
	}
}
