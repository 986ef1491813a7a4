package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/media"
	"github.com/peergram/peergram/relay/blobs"
)

// TestReview2AutoDownloadAnyFile: the kind that triggers an automatic
// download (photo, sticker, voice) is the sender's word (fileRef.Kind),
// as are the name and type; nothing checks the content is a photo or
// gives it a photo's extension. A contact sends N messages of "photos"
// that are 2 MiB executables named setup-N.exe: Bob's node writes them
// all into downloads/ without Bob asking, with no bound on their number.
func TestReview2AutoDownloadAnyFile(t *testing.T) {
	mal, bob, bobHome := reviewPair(t)
	const n = 12
	content := make([]byte, DefaultAutoDownload)
	copy(content, "MZ\x90\x00")
	for i := 0; i < n; i++ {
		tok, _ := blobs.NewToken(rand.Reader)
		m, err := filecrypt.Encrypt(rand.Reader, bytes.NewReader(content), int64(len(content)), func(_ int, _ filecrypt.Hash, ct []byte) error {
			_, err := mal.files.store.Add(tok, mal.keys.account.ID(), bytes.Clone(ct))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		m.Name, m.Mime = "setup-"+string(rune('a'+i))+".exe", "application/x-msdownload"
		raw, _ := m.MarshalBinary()
		var id chat.MessageID
		rand.Read(id[:])
		ref := &fileRef{Manifest: raw, Token: tok[:], Peer: mal.host.ID().String(), Kind: string(media.KindPhoto), Thumb: []byte{0xff, 0xd8}, Width: 1, Height: 1}
		if _, err := mal.submitSend(context.Background(), &sendReq{contact: "bob", id: id, now: mal.cfg.Now(), file: ref}); err != nil {
			t.Fatal(err)
		}
	}
	dl := filepath.Join(bobHome, "downloads")
	var names []string
	var total int64
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		names, total = nil, 0
		entries, _ := os.ReadDir(dl)
		for _, e := range entries {
			if filepath.Ext(e.Name()) == ".exe" {
				fi, _ := e.Info()
				names = append(names, e.Name())
				total += fi.Size()
			}
		}
		if len(names) == n {
			break
		}
		// Every automatic download tried and refused: no need to wait on.
		refused := 0
		fs, _ := bob.Files(context.Background(), "mallory")
		for _, f := range fs {
			if strings.Contains(f.Error, "not downloaded automatically") {
				refused++
			}
		}
		if refused == n {
			t.Logf("all %d refused: %s", n, fs[0].Error)
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if left, _ := os.ReadDir(filepath.Join(bobHome, "media")); len(left) > 0 {
		t.Fatalf("ATTACK WORKS: %d executables kept as automatic downloads in media/ (%s…)", len(left), left[0].Name())
	}
	if len(names) > 0 {
		t.Fatalf("ATTACK WORKS: without Bob asking, his node wrote %d sender-named executables (%d bytes) into %s: %q", len(names), total, dl, names)
	}
}
