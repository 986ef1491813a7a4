package node

import (
	"bytes"
	"context"
	"os"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// TestReviewFileRecordIDCollision: file records are keyed by message ID
// alone (files.rec: ID → record), while messages are keyed by (chat, ID)
// and a collision is only resolved within one chat. A message ID is the
// sender's choice (FileSend.ID, or any ID on the wire). Bob sends a file
// to Mallory; Mallory, who now knows its ID, writes to Bob from a second
// account (Eve) with a file message of the same ID: Bob's record of his
// own outgoing file is replaced by Eve's — other chat, not outgoing, Eve's
// manifest and token — so Bob's upload stops, his chat with Mallory loses
// the file, and "downloading" Bob's message ID yields Eve's content.
func TestReviewFileRecordIDCollision(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	bobHome, bobInfo := initHome(t, "bob")
	malHome, malInfo := initHome(t, "mallory")
	eveHome, eveInfo := initHome(t, "eve")
	bob := startNodeWith(t, bobHome, func(c *Config) { c.FileUploadAfter = time.Hour }, relay.addr)
	mal := startNode(t, malHome, relay.addr)
	eve := startNode(t, eveHome, relay.addr)
	addEachOther(t, bob, mal, bobInfo, malInfo)
	ctx := context.Background()
	// Eve is a stranger to Bob: only she adds him.
	eventually(t, "eve adds bob", func() (bool, error) {
		c, err := eve.AddContact(ctx, bobInfo.AccountID, "bob")
		return err == nil && c.Devices == 1, err
	})
	_ = eveInfo
	path, _ := writeFile(t, filecrypt.ChunkSize+10)
	msg, err := bob.SendFile(ctx, chat.FileSend{Chat: "mallory", Path: path})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "Mallory has it", func() (bool, error) {
		fs, err := mal.Files(ctx, "bob")
		return err == nil && len(fs) == 1, err
	})
	id, _ := chat.ParseMessageID(msg.ID)
	evil := []byte("eve's content, not bob's")
	reviewForgeSend(t, eve, "bob", "evil.txt", evil, nil, id)
	// Wait for Eve's message to land at Bob (as a message request).
	var rec *fileRecord
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		_ = bob.db.View(func(tx *storage.Txn) error { rec, _ = bob.getFile(tx, msg.ID); return nil })
		if rec != nil && (!rec.Outgoing || rec.From != bobInfo.AccountID) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rec == nil {
		t.Fatal("no record")
	}
	if !rec.Outgoing || rec.Chat != malInfo.AccountID {
		fs, _ := bob.Files(ctx, "mallory")
		out := t.TempDir() + "/x"
		got, derr := bob.Download(ctx, msg.ID, out)
		var content []byte
		if derr == nil {
			content, _ = os.ReadFile(got.Path)
		}
		t.Fatalf("ATTACK WORKS: Bob's record of his own file %s to Mallory now says chat=%s from=%s outgoing=%v state=%s; Bob's files with Mallory: %d; Download(%s) → %q (err %v, eve's=%v)",
			msg.ID, rec.Chat, rec.From, rec.Outgoing, rec.State, len(fs), msg.ID, content, derr, bytes.Equal(content, evil))
	}
}
