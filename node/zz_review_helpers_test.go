package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"testing"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/blobs"
)

// reviewForgeSend is a malicious sender's node: it encrypts content into
// its own store as SendFile does, lets mutate change the manifest at will
// (name, hashes, chunk names), and sends the file message with message
// ID id (zero: random).
func reviewForgeSend(t *testing.T, from *testNode, to string, name string, content []byte, mutate func(*filecrypt.Manifest, blobs.Token), id chat.MessageID) chat.Message {
	t.Helper()
	tok, err := blobs.NewToken(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	m, err := filecrypt.Encrypt(rand.Reader, bytes.NewReader(content), int64(len(content)), func(_ int, _ filecrypt.Hash, ct []byte) error {
		_, err := from.files.store.Add(tok, from.keys.account.ID(), bytes.Clone(ct))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	m.Name, m.Mime = name, "text/plain"
	if mutate != nil {
		mutate(m, tok)
	}
	raw, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if id == (chat.MessageID{}) {
		rand.Read(id[:])
	}
	ref := &fileRef{Manifest: raw, Token: tok[:], Peer: from.host.ID().String(), Relays: from.relayAddrs()}
	msg, err := from.submitSend(context.Background(), &sendReq{contact: to, id: id, now: from.cfg.Now(), file: ref})
	if err != nil {
		t.Fatal(err)
	}
	return msg
}
