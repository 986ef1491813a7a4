package node

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/blobs"
)

func reviewPair(t *testing.T) (mal, bob *testNode, bobHome string) {
	t.Helper()
	relay := startRelay(t, t.TempDir())
	malHome, malInfo := initHome(t, "mallory")
	bobHome, bobInfo := initHome(t, "bob")
	mal = startNodeWith(t, malHome, func(c *Config) { c.FileUploadAfter = time.Hour }, relay.addr)
	bob = startNode(t, bobHome, relay.addr)
	addEachOther(t, mal, bob, malInfo, bobInfo)
	return mal, bob, bobHome
}

func reviewWaitFile(t *testing.T, bob *testNode, id string) {
	t.Helper()
	eventually(t, "the file at Bob", func() (bool, error) {
		fs, err := bob.Files(context.Background(), "mallory")
		for _, f := range fs {
			if f.ID == id {
				return true, nil
			}
		}
		return false, err
	})
}

// TestReviewForgedNames: names from a malicious sender's manifest
// ("../..", absolute, dot files, control characters, a name that is
// only dots) never lead outside the home's downloads directory.
func TestReviewForgedNames(t *testing.T) {
	mal, bob, bobHome := reviewPair(t)
	ctx := context.Background()
	dl := filepath.Join(bobHome, "downloads")
	for _, name := range []string{"../../../../tmp/zz_review_escape", "/etc/zz_review_escape", "..", "../", ".bashrc", "a\x00b\n../c", "..\\..\\x", "\u202egpj.exe"} {
		msg := reviewForgeSend(t, mal, "bob", name, []byte("x"), nil, chat.MessageID{})
		reviewWaitFile(t, bob, msg.ID)
		dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		got, err := bob.Download(dctx, msg.ID, "")
		cancel()
		if err != nil {
			t.Fatalf("%q: %v", name, err)
		}
		if filepath.Dir(got.Path) != dl || strings.HasPrefix(filepath.Base(got.Path), ".") {
			t.Errorf("ATTACK WORKS: name %q written to %s", name, got.Path)
		}
		t.Logf("%q → %q (listed as %q)", name, filepath.Base(got.Path), got.Name)
	}
	if _, err := os.Stat("/tmp/zz_review_escape"); err == nil {
		t.Error("ATTACK WORKS: /tmp/zz_review_escape written")
	}
}

// TestReviewForgedChunkNeverFails: the manifest names a chunk that the
// sender serves (so its hash checks) but that is not sealed under the
// manifest's key: OpenChunk says ErrAuth, which no other source can ever
// fix (the name pins the bytes), yet fetchChunk retries it forever; the
// download never fails on its own, only when the caller gives up.
func TestReviewForgedChunkNeverFails(t *testing.T) {
	mal, bob, _ := reviewPair(t)
	ctx := context.Background()
	msg := reviewForgeSend(t, mal, "bob", "a.txt", []byte("hello"), func(m *filecrypt.Manifest, tok blobs.Token) {
		junk := make([]byte, 5+filecrypt.Overhead)
		rand.Read(junk)
		h, err := mal.files.store.Add(tok, mal.keys.account.ID(), junk)
		if err != nil {
			t.Fatal(err)
		}
		m.Chunks[0] = h
	}, chat.MessageID{})
	reviewWaitFile(t, bob, msg.ID)
	dctx, cancel := context.WithTimeout(ctx, 25*time.Second)
	defer cancel()
	start := time.Now()
	_, err := bob.Download(dctx, msg.ID, "")
	if errors.Is(err, context.DeadlineExceeded) || dctx.Err() != nil {
		t.Fatalf("ATTACK WORKS: a chunk that can never decrypt kept the download retrying for %v until the caller's deadline (err %v)", time.Since(start).Round(time.Second), err)
	}
	t.Logf("refused after %v: %v", time.Since(start), err)
}
