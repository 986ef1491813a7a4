package node

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/blobs"
)

// TestReviewFailedPartsAccumulate: a sender whose manifest's SHA-256 does
// not match its chunks makes every download write the whole file, fail
// the final check, and leave NAME.part behind; the next attempt sees the
// .part, picks "NAME (1)" and writes the whole file again. Each retry
// (a client retrying a failed download) costs up to 2 GiB of the
// recipient's disk that nothing reclaims.
func TestReviewFailedPartsAccumulate(t *testing.T) {
	mal, bob, bobHome := reviewPair(t)
	ctx := context.Background()
	size := 3*filecrypt.ChunkSize + 1
	msg := reviewForgeSend(t, mal, "bob", "big.iso", make([]byte, size), func(m *filecrypt.Manifest, _ blobs.Token) {
		m.SHA256[0] ^= 1
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
