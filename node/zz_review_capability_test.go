package node

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/blobs"
	"github.com/peergram/peergram/storage"
)

// TestReviewNodeServesOnlyWithToken: Mallory, a recipient of one of
// Alice's files (she holds its token), and knowing even the chunk names
// of Alice's other file to Bob, asks Alice's node and the relay for them
// with her token, a zero token and by Has: nothing.
func TestReviewNodeServesOnlyWithToken(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, aliceInfo := initHome(t, "alice")
	bobHome, bobInfo := initHome(t, "bob")
	malHome, malInfo := initHome(t, "mallory")
	alice := startNodeWith(t, aliceHome, func(c *Config) { c.FileUploadAfter = 200 * time.Millisecond }, relay.addr)
	bob := startNode(t, bobHome, relay.addr)
	mal := startNode(t, malHome, relay.addr)
	addEachOther(t, alice, bob, aliceInfo, bobInfo)
	addEachOther(t, alice, mal, aliceInfo, malInfo)
	bob.stop() // so that Alice uploads Bob's file to the relay
	ctx := context.Background()
	p1, _ := writeFile(t, 10)
	p2, _ := writeFile(t, filecrypt.ChunkSize+10)
	m1, err := alice.SendFile(ctx, chat.FileSend{Chat: "mallory", Path: p1})
	if err != nil {
		t.Fatal(err)
	}
	m2, err := alice.SendFile(ctx, chat.FileSend{Chat: "bob", Path: p2})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "Bob's file on the relay", func() (bool, error) {
		fs, err := alice.Files(ctx, "bob")
		return err == nil && len(fs) == 1 && fs[0].State == chat.FileUploaded, err
	})
	var r1, r2 *fileRecord
	_ = alice.db.View(func(tx *storage.Txn) error {
		r1, _ = alice.getFile(tx, m1.ID)
		r2, _ = alice.getFile(tx, m2.ID)
		return nil
	})
	man2, _ := r2.manifest()
	malTok := r1.token()
	direct := blobs.NewClientFor(mal.host, FileProtocolID)
	viaRelay := blobs.NewClient(mal.host)
	_ = mal.host.Connect(ctx, alice.host.Peerstore().PeerInfo(alice.host.ID()))
	for _, tk := range []blobs.Token{malTok, {}} {
		for _, h := range man2.Chunks {
			for name, src := range map[string]struct {
				c *blobs.Client
				p any
			}{"alice's node": {direct, nil}, "relay": {viaRelay, nil}} {
				target := alice.host.ID()
				if name == "relay" {
					target = relay.h.ID()
				}
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if b, _, err := src.c.Get(cctx, target, tk, h, 0, 0); !errors.Is(err, blobs.ErrNotFound) {
					t.Errorf("ATTACK WORKS: %s served chunk %x to another file's token: %d bytes (%v)", name, h[:4], len(b), err)
				}
				if have, err := src.c.Has(cctx, target, tk, [][32]byte{h}); err == nil && have[0] {
					t.Errorf("ATTACK WORKS: %s confirms chunk %x to another token", name, h[:4])
				}
				cancel()
			}
		}
	}
}
