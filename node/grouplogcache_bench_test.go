package node

import (
	"context"
	"encoding/hex"
	"errors"
	"testing"
	"time"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/storage"
)

// BenchmarkLongGroupLog: what one operation on a group costs when its log
// is long (longLogEntries, past the parsed-entry cache) against the same
// operation on a group of 150 entries, on one node, in the same run:
//
//	read     the API's view of the group (Group)
//	post     a message posted to it (SendGroup)
//	receive  a member's change arriving as a long log's end (applyGroupLog,
//	         the path gossip and pairwise ends take), in a transaction that
//	         is then rolled back so each round takes the same change
//
// ratio = long / short per operation; the target is ≤ 2 (an operation
// does not grow with the log). Before the node kept verified logs in
// memory, a log of 80,000 entries took ~15 s per operation.
func BenchmarkLongGroupLog(b *testing.B) {
	home, _ := initHome(b, "alice")
	alice := startNode(b, home)
	ctx := context.Background()
	group := func(title string, entries int) (string, groupstate.GroupID) {
		g, err := alice.CreateGroup(ctx, title)
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := hex.DecodeString(g.ID)
		id := groupstate.GroupID(raw)
		for done := 0; done < entries; done += 5000 {
			writePins(b, alice, id, min(5000, entries-done))
		}
		return g.ID, id
	}
	shortID, short := group("short", 150)
	longID, long := group("long", longLogEntries)

	// end is a change by alice after the group's head, sent as a long
	// log's end: the 16 entries before it, then it.
	end := func(id groupstate.GroupID) payload {
		l := alice.reloadGroup(b, id)
		head := l.Head()
		e, err := groupstate.Sign(alice.keys.device, alice.keys.cert, head, head.Time, groupstate.Change{Kind: groupstate.KindTitle, Text: "changed"})
		if err != nil {
			b.Fatal(err)
		}
		p := payload{Kind: "group-log", Group: hex.EncodeToString(id[:]), From: head.Seq - 15}
		for _, held := range l.Entries(head.Seq - 15) {
			raw, _ := held.MarshalBinary()
			p.Log = append(p.Log, raw)
		}
		raw, _ := e.MarshalBinary()
		p.Log = append(p.Log, raw)
		return p
	}
	ends := map[groupstate.GroupID]payload{short: end(short), long: end(long)}
	errRollback := errors.New("rolled back")
	receive := func(id groupstate.GroupID) error {
		err := alice.db.Update(func(tx *storage.Txn) error {
			if err := alice.applyGroupLog(tx, alice.keys.account.ID(), ends[id]); err != nil {
				return err
			}
			l, err := alice.loadGroupTx(tx, id)
			if err != nil {
				return err
			}
			if l.State().Title != "changed" {
				return errors.New("the change was not taken")
			}
			return errRollback
		})
		if errors.Is(err, errRollback) {
			return nil
		}
		return err
	}
	ops := []struct {
		name string
		run  func(string, groupstate.GroupID) error
	}{
		{"read", func(g string, _ groupstate.GroupID) error { _, err := alice.Group(ctx, g); return err }},
		{"post", func(g string, _ groupstate.GroupID) error { _, err := alice.SendGroup(ctx, g, "hello"); return err }},
		{"receive", func(_ string, id groupstate.GroupID) error { return receive(id) }},
	}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			var shortT, longT time.Duration
			for b.Loop() {
				t0 := time.Now()
				if err := op.run(shortID, short); err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				if err := op.run(longID, long); err != nil {
					b.Fatal(err)
				}
				shortT, longT = shortT+t1.Sub(t0), longT+time.Since(t1)
			}
			b.ReportMetric(float64(shortT.Nanoseconds())/float64(b.N), "short-ns/op")
			b.ReportMetric(float64(longT.Nanoseconds())/float64(b.N), "long-ns/op")
			b.ReportMetric(float64(longT)/float64(shortT), "ratio")
		})
	}
}

// longLogEntries is the long log's length in BenchmarkLongGroupLog.
const longLogEntries = 60_000
