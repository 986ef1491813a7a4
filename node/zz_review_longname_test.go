package node

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/peergram/peergram/node/chat"
)

// TestReviewLongNameHangs: fileName keeps up to 255 bytes of a name from
// the network, and downloadPath loops "for i := 0; ; i++" until os.Stat
// of both NAME and NAME.part says ErrNotExist. With a 251–255-byte name,
// NAME.part (and every "NAME (i).ext") is over NAME_MAX: Stat answers
// ENAMETOOLONG, never ErrNotExist, and Download spins on one core
// forever, ignoring its context. A sender (or just a long file name)
// does it; the file can never be downloaded to the default place.
func TestReviewLongNameHangs(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	alice := startNodeWith(t, aliceHome, func(c *Config) { c.FileUploadAfter = time.Hour }, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	ctx := context.Background()
	name := strings.Repeat("a", 251) + ".pdf" // 255 bytes: a legal file name
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	msg, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "the file at Bob", func() (bool, error) {
		fs, err := bob.Files(ctx, "alice")
		return err == nil && len(fs) == 1, err
	})
	dctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := bob.Download(dctx, msg.ID, ""); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("a file with a 255-byte name does not download: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("ATTACK WORKS: Download of a file with a 255-byte name has not returned 7 s after its context expired (downloadPath spins: ENAMETOOLONG is not ErrNotExist)")
	}
}
