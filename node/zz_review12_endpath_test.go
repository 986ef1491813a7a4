package node

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/storage"
)

// TestReview12EndFastPathMatchesWholePath (held): for long-log ends
// that continue the held log, the new path (continuation + applyEnd +
// mergeLog) ends where the old one did (the held entries before the end
// put in front, applyWholeLog): ends from members, from a member that a
// fresh entry of the end removes, bans or demotes, with an entry whose
// author lost the right earlier in the same end, with an entry dated too
// far before its predecessor, from a banned account, from a stranger,
// from a member who leaves last, with nothing new. Each is applied in a
// transaction that does not commit, and the log it leaves (its head and
// state, as loaded in the transaction) compared.
func TestReview12EndFastPathMatchesWholePath(t *testing.T) {
	home, _ := initHome(t, "alice")
	alice := startNode(t, home)
	id := r12NewGroup(t, alice, "ends")
	x, y, z, banned := r12NewUser(t, "x"), r12NewUser(t, "y"), r12NewUser(t, "z"), r12NewUser(t, "banned")
	stranger, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	self := alice.keys.account.ID()
	type by struct {
		dev  *identity.DeviceKey
		cert *identity.DeviceCert
	}
	owner := by{alice.keys.device, alice.keys.cert}
	as := func(u *r12User) by { return by{u.dev, u.cert} }
	// Base log: x, y, z and banned added; z an admin; banned banned.
	l := alice.reloadGroup(t, id)
	for _, c := range []groupstate.Change{
		{Kind: groupstate.KindAdd, Account: x.id()},
		{Kind: groupstate.KindAdd, Account: y.id()},
		{Kind: groupstate.KindAdd, Account: z.id()},
		{Kind: groupstate.KindPromote, Account: z.id()},
		{Kind: groupstate.KindAdd, Account: banned.id()},
		{Kind: groupstate.KindBan, Account: banned.id()},
	} {
		e, raw := alice.r12Owner(t, l.Head(), c)
		if _, err := l.Add(e); err != nil {
			t.Fatal(err)
		}
		alice.r12SetKey(t, groupEntryKey(id, e.Seq), raw)
	}
	writePins(t, alice, id, 12)
	mine := alice.reloadGroup(t, id)
	head := mine.Head()

	type step struct {
		by by
		c  groupstate.Change
		dt int64 // added to the predecessor's time
	}
	pin := func(b byte) groupstate.Change {
		return groupstate.Change{Kind: groupstate.KindPin, Ref: [32]byte{b, 0xaa}}
	}
	cases := []struct {
		name   string
		sender identity.AccountID
		held   int // entries of the held log the end starts with
		steps  []step
	}{
		{"member's pins", x.id(), 3, []step{{as(x), pin(1), 0}, {as(y), pin(2), 0}}},
		{"no held entries in it", x.id(), 0, []step{{as(x), pin(3), 0}}},
		{"nothing new", y.id(), 4, nil},
		{"nothing new, from a stranger", stranger.ID(), 4, nil},
		{"nothing new, from the banned", banned.id(), 4, nil},
		{"fresh entries from a stranger", stranger.ID(), 2, []step{{as(x), pin(4), 0}}},
		{"sender removed by the end", x.id(), 2, []step{{owner, groupstate.Change{Kind: groupstate.KindRemove, Account: x.id()}, 0}}},
		{"sender banned by the end", y.id(), 2, []step{{as(z), groupstate.Change{Kind: groupstate.KindBan, Account: y.id()}, 0}}},
		{"sender leaves last", y.id(), 2, []step{{as(y), pin(5), 0}, {as(y), groupstate.Change{Kind: groupstate.KindLeave}, 0}}},
		{"removed, then writes", z.id(), 2, []step{{as(z), groupstate.Change{Kind: groupstate.KindRemove, Account: x.id()}, 0}, {as(x), pin(6), 0}}},
		{"demoted, then bans", self, 2, []step{{owner, groupstate.Change{Kind: groupstate.KindDemote, Account: z.id()}, 0}, {as(z), groupstate.Change{Kind: groupstate.KindBan, Account: y.id()}, 0}}},
		{"banned account writes", x.id(), 2, []step{{as(x), pin(7), 0}, {as(banned), pin(8), 0}}},
		{"member promotes", x.id(), 2, []step{{as(x), groupstate.Change{Kind: groupstate.KindPromote, Account: y.id()}, 0}}},
		{"dated too far before", x.id(), 2, []step{{as(x), pin(9), 0}, {as(y), pin(10), -groupstate.MaxSkew - 1}}},
		{"valid then invalid then valid", x.id(), 1, []step{{as(x), pin(11), 0}, {as(y), groupstate.Change{Kind: groupstate.KindUnban, Account: banned.id()}, 0}, {as(x), pin(12), 0}}},
	}
	errAbort := errors.New("abort")
	gid := hex.EncodeToString(id[:])
	for _, c := range cases {
		var end [][]byte
		for _, e := range mine.Entries(head.Seq + 1 - uint64(c.held)) {
			b, _ := e.MarshalBinary()
			end = append(end, b)
		}
		prev := head
		for _, s := range c.steps {
			e, err := groupstate.Sign(s.by.dev, s.by.cert, prev, prev.Time+s.dt, s.c)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			b, _ := e.MarshalBinary()
			end = append(end, b)
			prev = e
		}
		from := head.Seq + 1 - uint64(c.held)
		outcome := func(apply func(tx *storage.Txn) error) string {
			var got string
			err := alice.db.Update(func(tx *storage.Txn) error {
				if err := apply(tx); err != nil {
					return err
				}
				l, err := alice.loadGroupTx(tx, id)
				if err != nil {
					return err
				}
				got = fmt.Sprintf("head %d %x\n%+v", l.Head().Seq, l.Head().Hash(), *l.State())
				return errAbort
			})
			if !errors.Is(err, errAbort) {
				t.Fatalf("%s: %v", c.name, err)
			}
			return got
		}
		fast := outcome(func(tx *storage.Txn) error {
			return alice.applyGroupLog(tx, c.sender, payload{Kind: "group-log", Group: gid, Log: end, From: from})
		})
		whole := outcome(func(tx *storage.Txn) error {
			var all [][]byte
			for _, e := range mine.Entries(0)[:from] {
				b, _ := e.MarshalBinary()
				all = append(all, b)
			}
			return ignoreRejected(alice.applyWholeLog(tx, c.sender, payload{Kind: "group-log", Group: gid, Log: append(all, end...)}))
		})
		if fast != whole {
			t.Errorf("%s: the end path leaves\n%s\nthe whole path\n%s", c.name, fast, whole)
		} else {
			t.Logf("%s: %s", c.name, fast[:20])
		}
	}
}
