package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/sealed"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// jobs returns the node's outbox.
func jobs(t *testing.T, n *testNode) []*job {
	t.Helper()
	var out []*job
	if err := n.db.View(func(tx *storage.Txn) error {
		if err := tx.Iterate(n.st.outbox, nil, func(_, val []byte) error {
			j, err := decodeJob(val)
			if err != nil {
				return err
			}
			out = append(out, j)
			return nil
		}); err != nil {
			return err
		}
		for _, j := range out {
			if err := n.loadSealedAll(tx, []*job{j}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func textsOf(t *testing.T, msgs []sealed.Message) []string {
	t.Helper()
	var out []string
	for _, m := range msgs {
		var p payload
		if err := json.Unmarshal(m.Body, &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Text)
	}
	return out
}

// TestOrderAfterBackoff: a message waiting out a retry backoff holds back
// the later messages to the same contact. Before, the next pass sent the
// later message at once and the recipient got them out of order.
func TestOrderAfterBackoff(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	alice := startNodeWith(t, aliceHome, func(c *Config) { c.RetryMin, c.RetryMax = 2*time.Second, 2*time.Second }, relay.addr)
	bob := newFakeDevice(t, relay, nil, "bob")
	list := bob.publishList(t, nil, bob.cert) // no prekeys yet: sealing fails
	ctx := context.Background()
	if _, err := alice.AddContact(ctx, bob.acct.ID().String(), "bob"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, "bob", "first"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the first message in backoff", func() (bool, error) {
		js := jobs(t, alice)
		return len(js) == 1 && js[0].Attempts > 0, nil
	})
	bob.publishBundle(t, list)
	if _, err := alice.Send(ctx, "bob", "second"); err != nil {
		t.Fatal(err)
	}
	if got := textsOf(t, bob.receiveN(t, 2)); !slices.Equal(got, []string{"first", "second"}) {
		t.Fatalf("Bob received %q", got)
	}
}

// TestSealOnce: while a message cannot be handed over, every retry sends
// the same envelope and the ratchet does not move. Before, each retry
// sealed anew: after 25,000 tries the receiver's skip bound rejected the
// message that finally arrived.
func TestSealOnce(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	alice := startNode(t, aliceHome, relay.addr)
	bob := newFakeDevice(t, relay, nil, "bob")
	bob.publish(t, nil, bob.cert)
	ctx := context.Background()
	if _, err := alice.AddContact(ctx, bob.acct.ID().String(), "bob"); err != nil {
		t.Fatal(err)
	}
	relay.close() // no route to Bob from now on
	if _, err := alice.Send(ctx, "bob", "once"); err != nil {
		t.Fatal(err)
	}
	var first []byte
	eventually(t, "a sealed copy", func() (bool, error) {
		js := jobs(t, alice)
		if len(js) == 1 && len(js[0].Sealed) == 1 {
			for _, c := range js[0].Sealed {
				first = c.Env
			}
			return true, nil
		}
		return false, nil
	})
	session := func() []byte {
		var raw []byte
		if err := alice.db.View(func(tx *storage.Txn) (err error) {
			raw, err = tx.Get(alice.st.sessions, sessionKey(peerKey{bob.acct.ID(), bob.dev.ID()}))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return raw
	}
	before := session()
	eventually(t, "five more attempts", func() (bool, error) {
		js := jobs(t, alice)
		return len(js) == 1 && js[0].Attempts >= 6, nil
	})
	js := jobs(t, alice)
	for _, c := range js[0].Sealed {
		if !bytes.Equal(c.Env, first) {
			t.Fatal("a retry sealed a new envelope")
		}
	}
	if !bytes.Equal(session(), before) {
		t.Fatal("retries advanced the session")
	}
}

// TestSizeLimitOnEncoding: the limit applies to the encoded payload. Text
// whose JSON encoding is larger than the body limit is refused at once;
// text that JSON would have HTML-escaped ("<" as six bytes) but that fits
// unescaped is sent and arrives intact. Before, 40,000 "<" were accepted
// and then stuck as pending forever.
func TestSizeLimitOnEncoding(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	alice := startNode(t, aliceHome, relay.addr)
	bob := newFakeDevice(t, relay, nil, "bob")
	bob.publish(t, nil, bob.cert)
	ctx := context.Background()
	if _, err := alice.AddContact(ctx, bob.acct.ID().String(), "bob"); err != nil {
		t.Fatal(err)
	}
	quotes := strings.Repeat(`"`, 100_000) // 200,000 bytes escaped
	if _, err := alice.Send(ctx, "bob", quotes); !errors.Is(err, chat.ErrTooLarge) {
		t.Fatalf("text over the limit once encoded: %v, want ErrTooLarge", err)
	}
	angles := strings.Repeat("<", 150_000)
	if _, err := alice.Send(ctx, "bob", angles); err != nil {
		t.Fatalf("text that fits unescaped: %v", err)
	}
	if got := textsOf(t, bob.receiveN(t, 1)); len(got) != 1 || got[0] != angles {
		t.Fatalf("Bob got %d texts of %d bytes", len(got), len(got[0]))
	}
}

// TestUndeliverable: a message that can never be delivered ends as failed
// with a reason instead of retrying forever — a contact with no devices at
// once, any message after the retry window (30 days).
func TestUndeliverable(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	alice := startNode(t, aliceHome, relay.addr)
	ctx := context.Background()
	failed := func(contact, text string) chat.Message {
		var m chat.Message
		eventually(t, "message "+text+" failed", func() (bool, error) {
			msgs, err := alice.Messages(ctx, contact, false)
			for _, x := range msgs {
				if x.Text == text {
					m = x
				}
			}
			return m.Status == chat.StatusFailed, err
		})
		if m.Error == "" {
			t.Fatal("failed without a reason")
		}
		return m
	}

	empty := newFakeDevice(t, relay, nil, "nobody")
	empty.publishList(t, nil)
	if _, err := alice.AddContact(ctx, empty.acct.ID().String(), "nobody"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Send(ctx, "nobody", "to no device"); err != nil {
		t.Fatal(err)
	}
	failed("nobody", "to no device")

	bob := newFakeDevice(t, relay, nil, "bob")
	bob.publish(t, nil, bob.cert)
	if _, err := alice.AddContact(ctx, bob.acct.ID().String(), "bob"); err != nil {
		t.Fatal(err)
	}
	relay.close()
	if _, err := alice.Send(ctx, "bob", "lost in an outage"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "a failed attempt", func() (bool, error) {
		js := jobs(t, alice)
		return len(js) == 1 && js[0].Attempts > 0, nil
	})
	if m, _ := alice.Messages(ctx, "bob", false); m[0].Status != chat.StatusPending {
		t.Fatalf("status %s during the retry window", m[0].Status)
	}
	alice.setClock(maxTextRetry + time.Hour)
	alice.kick()
	failed("bob", "lost in an outage")
	if n := len(jobs(t, alice)); n != 0 {
		t.Fatalf("%d jobs left after giving up", n)
	}
}

// TestReceiptBatches: read receipts for a long unread chat are split so
// each stays far below the body limit.
func TestReceiptBatches(t *testing.T) {
	home, _ := initHome(t, "a")
	n := startNode(t, home)
	var to [32]byte
	to[0] = 7
	ids := make([]string, 2*maxReceiptIDs+1)
	for i := range ids {
		var id chat.MessageID
		id[0], id[1] = byte(i), byte(i>>8)
		ids[i] = id.String()
	}
	var js []*job
	if err := n.db.Update(func(tx *storage.Txn) (err error) {
		js, err = n.receiptJobs(tx, to, chat.StatusRead, ids, time.Now().UnixMilli())
		return err
	}); err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, j := range js {
		var p payload
		if err := json.Unmarshal(j.Payload, &p); err != nil {
			t.Fatal(err)
		}
		if len(p.IDs) > maxReceiptIDs || len(j.Payload) > sealed.MaxBodySize/4 {
			t.Fatalf("a receipt of %d IDs, %d bytes", len(p.IDs), len(j.Payload))
		}
		total += len(p.IDs)
	}
	if len(js) != 3 || total != len(ids) {
		t.Fatalf("%d receipts naming %d IDs, want 3 naming %d", len(js), total, len(ids))
	}
}

// TestLegacyOutboxMigrated: jobs a node stored in the outbox layout before
// outbox.q (key: seq alone) are moved at start, in their order, and
// delivered; chat numbers continue above the old per-chat counter.
func TestLegacyOutboxMigrated(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	alice := startNode(t, aliceHome, relay.addr)
	bob := newFakeDevice(t, relay, nil, "bob")
	bob.publish(t, nil, bob.cert)
	ctx := context.Background()
	if _, err := alice.AddContact(ctx, bob.acct.ID().String(), "bob"); err != nil {
		t.Fatal(err)
	}
	alice.stop()
	db, err := storage.Open(storage.Options{Dir: filepath.Join(aliceHome, dirStore)})
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(db)
	to := bob.acct.ID()
	if err := db.Update(func(tx *storage.Txn) error {
		for i, text := range []string{"old one", "old two"} {
			body, err := json.Marshal(payload{Kind: "text", Seq: uint64(i + 1), Text: text})
			if err != nil {
				return err
			}
			raw, err := json.Marshal(&job{Seq: uint64(10 - i), ID: chat.MessageID{byte(i + 1)}, To: to, Payload: body, SentAt: time.Now().UnixMilli()})
			if err != nil {
				return err
			}
			if err := tx.Set(st.legacyOutbox, binary.BigEndian.AppendUint64(nil, uint64(i+1)), raw); err != nil {
				return err
			}
		}
		// A home from before the chat sequence: its per-chat counter, no base.
		if err := tx.Delete(st.meta, []byte("chat-seq-base")); err != nil {
			return err
		}
		return tx.Set(st.meta, append([]byte("seq/"), to[:]...), binary.BigEndian.AppendUint64(nil, 41))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	alice = startNode(t, aliceHome, relay.addr)
	if got := textsOf(t, bob.receiveN(t, 2)); !slices.Equal(got, []string{"old one", "old two"}) {
		t.Fatalf("Bob received %q", got)
	}
	m, err := alice.Send(ctx, "bob", "new")
	if err != nil {
		t.Fatal(err)
	}
	if m.Seq <= 41 {
		t.Fatalf("chat seq %d after a per-chat counter at 41", m.Seq)
	}
	if got := textsOf(t, bob.receiveN(t, 1)); !slices.Equal(got, []string{"new"}) {
		t.Fatalf("Bob received %q", got)
	}
	eventually(t, "an empty outbox", func() (bool, error) { return len(jobs(t, alice)) == 0, nil })
	if err := alice.db.View(func(tx *storage.Txn) error {
		n, err := tx.Count(alice.st.sealed, nil)
		if err == nil && n != 0 {
			return fmt.Errorf("%d sealed copies left after every job was delivered", n)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// TestLargeMessagesBatched: large messages posted at once are stored,
// sealed, deposited and received in batches that each fit in one
// transaction (before, a batch of them failed with ErrTxnTooBig, again and
// again). The messages wait in the outbox first (the contact has published
// no prekeys yet), so the outbox meets them all in one go.
func TestLargeMessagesBatched(t *testing.T) {
	relay := startRelay(t, t.TempDir())
	aliceHome, _ := initHome(t, "alice")
	alice := startNodeWith(t, aliceHome, func(c *Config) { c.RetryMin, c.RetryMax = time.Second, time.Second }, relay.addr)
	bob := newFakeDevice(t, relay, nil, "bob")
	list := bob.publishList(t, nil, bob.cert) // no prekeys yet: sealing fails
	ctx := context.Background()
	if _, err := alice.AddContact(ctx, bob.acct.ID().String(), "bob"); err != nil {
		t.Fatal(err)
	}
	const n, size = 40, 100 << 10
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			text := fmt.Sprintf("%02d ", i) + strings.Repeat("x", size)
			if _, err := alice.Send(ctx, "bob", text); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	eventually(t, "every message waiting", func() (bool, error) {
		js := jobs(t, alice)
		return len(js) == n && js[0].Attempts > 0, nil
	})
	bob.publishBundle(t, list)
	got := textsOf(t, bob.receiveN(t, n))
	slices.Sort(got)
	for i, s := range got {
		if want := fmt.Sprintf("%02d ", i) + strings.Repeat("x", size); s != want {
			t.Fatalf("message %d: %d bytes starting %.8q", i, len(s), s)
		}
	}
}

// TestMessageRecordCompact: a stored record leaves out what its key and
// the node already know, and reads back whole; a record in the older,
// complete form reads the same.
func TestMessageRecordCompact(t *testing.T) {
	db, err := storage.Open(storage.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := newStore(db)
	var self, peer identity.AccountID
	self[0], peer[0] = 1, 2
	st.self = self
	id := chat.MessageID{7}
	out := &messageRecord{Message: chat.Message{ID: id.String(), Chat: peer.String(), From: self.String(), Outgoing: true,
		Text: "hi", SentAt: time.UnixMilli(1000).UTC(), Status: chat.StatusSent, Seq: 3, FromName: "me", FromContact: true}}
	if err := db.Update(func(tx *storage.Txn) error { return st.putMessage(tx, peer, out) }); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	var back *messageRecord
	if err := db.View(func(tx *storage.Txn) (err error) {
		if raw, err = tx.Get(st.messages, messageKey(peer, id)); err != nil {
			return err
		}
		back, err = st.getMessage(tx, peer, id)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte(peer.String())) || bytes.Contains(raw, []byte(self.String())) || bytes.Contains(raw, []byte("received_at")) {
		t.Fatalf("record stores what its key and the node know: %s", raw)
	}
	if fmt.Sprint(back.Message) != fmt.Sprint(out.Message) {
		t.Fatalf("read back %+v, wrote %+v", back.Message, out.Message)
	}
	full, err := json.Marshal(out) // the older form: every field
	if err != nil {
		t.Fatal(err)
	}
	old, err := st.decodeMessage(peer, full)
	if err != nil || fmt.Sprint(old.Message) != fmt.Sprint(out.Message) {
		t.Fatalf("older record read as %+v (%v)", old, err)
	}
	// A status change writes the status alone; reads see it.
	out.Status = chat.StatusDelivered
	if err := db.Update(func(tx *storage.Txn) error { return st.putStatus(tx, peer, out) }); err != nil {
		t.Fatal(err)
	}
	if err := db.View(func(tx *storage.Txn) error {
		now, err := tx.Get(st.messages, messageKey(peer, id))
		if err != nil || !bytes.Equal(now, raw) {
			return fmt.Errorf("a status change rewrote the record (%v)", err)
		}
		m, err := st.getMessage(tx, peer, id)
		if err != nil || m.Status != chat.StatusDelivered {
			return fmt.Errorf("getMessage: %+v, %v", m, err)
		}
		all, err := st.chatMessages(tx, peer)
		if err != nil || len(all) != 1 || all[0].Status != chat.StatusDelivered {
			return fmt.Errorf("chatMessages: %+v, %v", all, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
