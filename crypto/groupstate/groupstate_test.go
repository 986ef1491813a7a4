package groupstate

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"

	"github.com/peergram/peergram/crypto/identity"
)

type user struct {
	name string
	acct *identity.AccountKey
	dev  *identity.DeviceKey
	cert *identity.DeviceCert
}

func newUser(t testing.TB, name string) *user {
	t.Helper()
	acct, err := identity.NewAccountKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	dev, err := identity.NewDeviceKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := acct.CertifyDevice(dev, name, 1_700_000_000)
	if err != nil {
		t.Fatal(err)
	}
	return &user{name: name, acct: acct, dev: dev, cert: cert}
}

func (u *user) id() identity.AccountID { return u.acct.ID() }

// sign makes u's entry after prev, through the encoding (as a member
// receives it).
func (u *user) sign(t testing.TB, prev *Entry, c Change) *Entry {
	t.Helper()
	e, err := Sign(u.dev, u.cert, prev, now(prev), c)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := e.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Parse(raw)
	if err != nil {
		t.Fatalf("parse own entry: %v", err)
	}
	if back.Hash() != e.Hash() {
		t.Fatal("hash changed through the encoding")
	}
	return back
}

func now(prev *Entry) int64 {
	if prev == nil {
		return 1_800_000_000_000
	}
	return prev.Time + 1000
}

func ref(s string) (r [32]byte) {
	copy(r[:], s)
	return r
}

// inviteKey is a deterministic invite link key; invRef its Ref.
func inviteKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(name))
	return ed25519.NewKeyFromSeed(seed[:])
}

func invRef(name string) (r [32]byte) {
	copy(r[:], inviteKey(name).Public().(ed25519.PublicKey))
	return r
}

// join is the outsider's join with the invite name's key.
func join(g *group, name string) Change {
	return Change{Kind: KindJoin, Ref: invRef(name), Text: InviteProof(inviteKey(name), g.log.Group(), g.outsider.id())}
}

// group is a log with owner O, admin A, members M and N, and outsider X.
type group struct {
	log                *Log
	owner, admin, m, n *user
	outsider           *user
}

func newGroup(t testing.TB) *group {
	t.Helper()
	g := &group{owner: newUser(t, "O"), admin: newUser(t, "A"), m: newUser(t, "M"), n: newUser(t, "N"), outsider: newUser(t, "X")}
	create := g.owner.sign(t, nil, Change{Kind: KindCreate, Text: "friends", Perms: DefaultPerms, Ref: ref("nonce")})
	var err error
	if g.log, err = NewLog(create); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		by *user
		ch Change
	}{
		{g.owner, Change{Kind: KindAdd, Account: g.admin.id()}},
		{g.owner, Change{Kind: KindPromote, Account: g.admin.id()}},
		{g.admin, Change{Kind: KindAdd, Account: g.m.id()}},
		{g.m, Change{Kind: KindAdd, Account: g.n.id()}},
	} {
		g.add(t, c.by, c.ch)
	}
	return g
}

func (g *group) add(t testing.TB, by *user, c Change) *Entry {
	t.Helper()
	e := by.sign(t, g.log.Head(), c)
	if _, err := g.log.Add(e); err != nil {
		t.Fatalf("%s by %s: %v", c.Kind, by.name, err)
	}
	return e
}

func TestGroupCreated(t *testing.T) {
	g := newGroup(t)
	st := g.log.State()
	want := map[*user]Role{g.owner: RoleOwner, g.admin: RoleAdmin, g.m: RoleMember, g.n: RoleMember, g.outsider: RoleNone}
	for u, r := range want {
		if got := st.Role(u.id()); got != r {
			t.Errorf("%s is %s, want %s", u.name, got, r)
		}
	}
	if st.Title != "friends" || st.Seq != 4 || GroupID(g.log.Entries(0)[0].Hash()) != st.Group {
		t.Fatalf("state %+v", st)
	}
}

// TestRights is each role against each change: who may and who may not.
func TestRights(t *testing.T) {
	type actor int
	const (
		owner actor = iota
		admin
		member
		outsider
	)
	tests := []struct {
		name   string
		by     actor
		change func(g *group) Change
		prep   func(t *testing.T, g *group) // changes made first
		ok     bool
	}{
		{"member renames (no PermInfo)", member, func(*group) Change { return Change{Kind: KindTitle, Text: "x"} }, nil, false},
		{"admin renames", admin, func(*group) Change { return Change{Kind: KindTitle, Text: "x"} }, nil, true},
		{"member renames with PermInfo", member, func(*group) Change { return Change{Kind: KindTitle, Text: "x"} },
			func(t *testing.T, g *group) {
				g.add(t, g.admin, Change{Kind: KindPermissions, Perms: DefaultPerms | PermInfo})
			}, true},
		{"outsider renames", outsider, func(*group) Change { return Change{Kind: KindTitle, Text: "x"} }, nil, false},
		{"member adds", member, func(g *group) Change { return Change{Kind: KindAdd, Account: g.outsider.id()} }, nil, true},
		{"member adds without PermAdd", member, func(g *group) Change { return Change{Kind: KindAdd, Account: g.outsider.id()} },
			func(t *testing.T, g *group) { g.add(t, g.admin, Change{Kind: KindPermissions, Perms: PermSend}) }, false},
		{"outsider adds itself", outsider, func(g *group) Change { return Change{Kind: KindAdd, Account: g.outsider.id()} }, nil, false},
		{"member removes member", member, func(g *group) Change { return Change{Kind: KindRemove, Account: g.n.id()} }, nil, false},
		{"admin removes member", admin, func(g *group) Change { return Change{Kind: KindRemove, Account: g.n.id()} }, nil, true},
		{"admin removes owner", admin, func(g *group) Change { return Change{Kind: KindRemove, Account: g.owner.id()} }, nil, false},
		{"owner removes admin", owner, func(g *group) Change { return Change{Kind: KindRemove, Account: g.admin.id()} }, nil, true},
		{"admin bans outsider", admin, func(g *group) Change { return Change{Kind: KindBan, Account: g.outsider.id()} }, nil, true},
		{"member bans", member, func(g *group) Change { return Change{Kind: KindBan, Account: g.n.id()} }, nil, false},
		{"member adds banned", member, func(g *group) Change { return Change{Kind: KindAdd, Account: g.outsider.id()} },
			func(t *testing.T, g *group) { g.add(t, g.admin, Change{Kind: KindBan, Account: g.outsider.id()}) }, false},
		{"admin adds banned", admin, func(g *group) Change { return Change{Kind: KindAdd, Account: g.outsider.id()} },
			func(t *testing.T, g *group) { g.add(t, g.admin, Change{Kind: KindBan, Account: g.outsider.id()}) }, true},
		{"admin promotes", admin, func(g *group) Change { return Change{Kind: KindPromote, Account: g.m.id()} }, nil, false},
		{"owner promotes", owner, func(g *group) Change { return Change{Kind: KindPromote, Account: g.m.id()} }, nil, true},
		{"owner promotes outsider", owner, func(g *group) Change { return Change{Kind: KindPromote, Account: g.outsider.id()} }, nil, false},
		{"admin demotes itself", admin, func(g *group) Change { return Change{Kind: KindDemote, Account: g.admin.id()} }, nil, false},
		{"owner demotes admin", owner, func(g *group) Change { return Change{Kind: KindDemote, Account: g.admin.id()} }, nil, true},
		{"member sets permissions", member, func(*group) Change { return Change{Kind: KindPermissions, Perms: permAll} }, nil, false},
		{"member pins", member, func(*group) Change { return Change{Kind: KindPin, Ref: ref("msg")} }, nil, true},
		{"member pins twice", member, func(*group) Change { return Change{Kind: KindPin, Ref: ref("msg")} },
			func(t *testing.T, g *group) { g.add(t, g.m, Change{Kind: KindPin, Ref: ref("msg")}) }, false},
		{"member unpins what is not pinned", member, func(*group) Change { return Change{Kind: KindUnpin, Ref: ref("msg")} }, nil, false},
		{"outsider joins without invite", outsider, func(g *group) Change { return join(g, "inv") }, nil, false},
		{"outsider joins with invite", outsider, func(g *group) Change { return join(g, "inv") },
			func(t *testing.T, g *group) { g.add(t, g.admin, Change{Kind: KindInviteCreate, Ref: invRef("inv")}) }, true},
		{"outsider joins with the invite's Ref, no key", outsider, func(g *group) Change { return Change{Kind: KindJoin, Ref: invRef("inv"), Text: "x"} },
			func(t *testing.T, g *group) { g.add(t, g.admin, Change{Kind: KindInviteCreate, Ref: invRef("inv")}) }, false},
		{"outsider joins with another invite's key", outsider, func(g *group) Change {
			c := join(g, "other")
			c.Ref = invRef("inv")
			return c
		}, func(t *testing.T, g *group) { g.add(t, g.admin, Change{Kind: KindInviteCreate, Ref: invRef("inv")}) }, false},
		{"outsider replays a member's join proof", outsider, func(g *group) Change {
			return Change{Kind: KindJoin, Ref: invRef("inv"), Text: InviteProof(inviteKey("inv"), g.log.Group(), g.m.id())}
		}, func(t *testing.T, g *group) { g.add(t, g.admin, Change{Kind: KindInviteCreate, Ref: invRef("inv")}) }, false},
		{"outsider joins with revoked invite", outsider, func(g *group) Change { return join(g, "inv") },
			func(t *testing.T, g *group) {
				g.add(t, g.admin, Change{Kind: KindInviteCreate, Ref: invRef("inv")})
				g.add(t, g.admin, Change{Kind: KindInviteRevoke, Ref: invRef("inv")})
			}, false},
		{"outsider joins with expired invite", outsider, func(g *group) Change { return join(g, "inv") },
			func(t *testing.T, g *group) {
				g.add(t, g.admin, Change{Kind: KindInviteCreate, Ref: invRef("inv"), Expires: g.log.Head().Time + 500})
			}, false},
		{"banned joins with invite", outsider, func(g *group) Change { return join(g, "inv") },
			func(t *testing.T, g *group) {
				g.add(t, g.admin, Change{Kind: KindInviteCreate, Ref: invRef("inv")})
				g.add(t, g.admin, Change{Kind: KindBan, Account: g.outsider.id()})
			}, false},
		{"member revokes admin's invite", member, func(*group) Change { return Change{Kind: KindInviteRevoke, Ref: ref("inv")} },
			func(t *testing.T, g *group) { g.add(t, g.admin, Change{Kind: KindInviteCreate, Ref: ref("inv")}) }, false},
		{"member revokes own invite", member, func(*group) Change { return Change{Kind: KindInviteRevoke, Ref: ref("inv")} },
			func(t *testing.T, g *group) { g.add(t, g.m, Change{Kind: KindInviteCreate, Ref: ref("inv")}) }, true},
		{"member leaves", member, func(*group) Change { return Change{Kind: KindLeave} }, nil, true},
		{"owner leaves", owner, func(*group) Change { return Change{Kind: KindLeave} }, nil, false},
		{"outsider leaves", outsider, func(*group) Change { return Change{Kind: KindLeave} }, nil, false},
		{"removed member posts a change", member, func(*group) Change { return Change{Kind: KindPin, Ref: ref("msg")} },
			func(t *testing.T, g *group) { g.add(t, g.admin, Change{Kind: KindRemove, Account: g.m.id()}) }, false},
		{"a second creation", owner, func(*group) Change { return Change{Kind: KindCreate, Text: "again"} }, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGroup(t)
			if tt.prep != nil {
				tt.prep(t, g)
			}
			by := []*user{g.owner, g.admin, g.m, g.outsider}[tt.by]
			c := tt.change(g)
			e, err := Sign(by.dev, by.cert, g.log.Head(), now(g.log.Head()), c)
			if err == nil {
				_, err = g.log.Add(e)
			}
			if tt.ok != (err == nil) {
				t.Fatalf("%s by %s: %v, want allowed=%v", c.Kind, by.name, err, tt.ok)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
		})
	}
}

// TestForgeries is the attack of entries that do not come from who they
// claim, or do not follow the log: each is refused.
func TestForgeries(t *testing.T) {
	g := newGroup(t)
	head := g.log.Head()
	good := g.admin.sign(t, head, Change{Kind: KindTitle, Text: "renamed"})
	raw, _ := good.MarshalBinary()

	// A member signs an admin's change with its own device but the
	// admin's certificate.
	if _, err := Sign(g.m.dev, g.admin.cert, head, now(head), Change{Kind: KindTitle, Text: "x"}); !errors.Is(err, ErrSignature) {
		t.Fatalf("signing with another device's certificate: %v", err)
	}
	tests := map[string][]byte{
		"flipped text":      flip(raw, 1+32+8+8+4+len(mustCert(t, g.admin))+1+4),
		"flipped signature": flip(raw, len(raw)-1),
		"truncated":         raw[:len(raw)-10],
		"trailing":          append(append([]byte(nil), raw...), 0),
		"empty":             nil,
		"unknown version":   append([]byte{2}, raw[1:]...),
		"oversized":         make([]byte, MaxEntrySize+1),
	}
	for name, b := range tests {
		if _, err := Parse(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: parsed (%v)", name, err)
		}
	}
	// An outsider's device with a certificate naming the admin's account
	// (the account's signature cannot match): a valid device signature
	// over an admin's change.
	fake := *g.outsider.cert
	fake.Account = g.admin.id()
	byFake, err := Sign(g.outsider.dev, &fake, head, now(head), Change{Kind: KindTitle, Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	fakeRaw, _ := byFake.MarshalBinary()
	if _, err := Parse(fakeRaw); !errors.Is(err, ErrSignature) {
		t.Fatalf("entry with a forged certificate: %v", err)
	}
	// An outsider's own certificate and signature, valid bytes, no rights.
	if _, err := g.log.Add(g.outsider.sign(t, head, Change{Kind: KindTitle, Text: "mine"})); !errors.Is(err, ErrForbidden) {
		t.Fatalf("outsider's change: %v", err)
	}
	// An entry of another group at this position.
	other := newGroup(t)
	if _, err := g.log.Add(other.admin.sign(t, other.log.Head(), Change{Kind: KindTitle, Text: "x"})); !errors.Is(err, ErrChain) {
		t.Fatalf("entry of another group: %v", err)
	}
	// A replay: the same entry twice changes nothing; an old entry again
	// is not a new change.
	if _, err := g.log.Add(good); err != nil {
		t.Fatal(err)
	}
	seq := g.log.State().Seq
	for _, e := range []*Entry{good, g.log.Entries(1)[0]} {
		if dropped, err := g.log.Add(e); err != nil || dropped != nil || g.log.State().Seq != seq {
			t.Fatalf("replay of entry %d: %v, %v, seq %d", e.Seq, dropped, err, g.log.State().Seq)
		}
	}
	// An entry from far ahead.
	if _, err := g.log.Add(g.admin.sign(t, &Entry{hash: ref("x"), Seq: seq + 5, Time: head.Time}, Change{Kind: KindTitle, Text: "x"})); !errors.Is(err, ErrGap) {
		t.Fatalf("entry from ahead: %v", err)
	}
	// Time running far backwards.
	back, err := Sign(g.admin.dev, g.admin.cert, g.log.Head(), g.log.Head().Time-MaxSkew-1, Change{Kind: KindTitle, Text: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.log.Add(back); !errors.Is(err, ErrChain) {
		t.Fatalf("entry from the past: %v", err)
	}
}

func mustCert(t *testing.T, u *user) []byte {
	b, err := u.cert.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func flip(b []byte, i int) []byte {
	c := append([]byte(nil), b...)
	c[i] ^= 1
	return c
}

// TestForks: concurrent changes resolve the same way whatever order a
// member sees them in; the higher role wins; history older than the
// window is final, so a former admin cannot rewrite it.
func TestForks(t *testing.T) {
	t.Run("two admins, both orders", func(t *testing.T) {
		g := newGroup(t)
		g.add(t, g.owner, Change{Kind: KindPromote, Account: g.m.id()})
		fork := g.log.Head()
		a := g.admin.sign(t, fork, Change{Kind: KindTitle, Text: "by A"})
		b := g.m.sign(t, fork, Change{Kind: KindTitle, Text: "by M"})
		entries := g.log.Entries(0)
		heads := map[string]string{}
		for _, order := range [][]*Entry{{a, b}, {b, a}} {
			l, err := Replay(entries)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range order {
				if _, err := l.Add(e); err != nil && !errors.Is(err, ErrLostFork) {
					t.Fatal(err)
				}
			}
			heads[fmt.Sprintf("%x", l.Head().Hash())] = l.State().Title
		}
		if len(heads) != 1 {
			t.Fatalf("orders disagree: %v", heads)
		}
	})
	t.Run("owner beats admin; the admin's branch is dropped", func(t *testing.T) {
		g := newGroup(t)
		fork := g.log.Head()
		byAdmin := g.add(t, g.admin, Change{Kind: KindRemove, Account: g.n.id()})
		next := g.add(t, g.admin, Change{Kind: KindTitle, Text: "admin's"})
		byOwner := g.owner.sign(t, fork, Change{Kind: KindDemote, Account: g.admin.id()})
		dropped, err := g.log.Add(byOwner)
		if err != nil {
			t.Fatal(err)
		}
		if len(dropped) != 2 || dropped[0] != byAdmin || dropped[1] != next {
			t.Fatalf("dropped %v", dropped)
		}
		st := g.log.State()
		if st.Role(g.admin.id()) != RoleMember || st.Role(g.n.id()) != RoleMember || st.Title != "friends" {
			t.Fatalf("after the owner's change: admin %s, N %s, title %q", st.Role(g.admin.id()), st.Role(g.n.id()), st.Title)
		}
		// The admin's change again, now: it is no longer an admin.
		if _, err := g.log.Add(byAdmin); !errors.Is(err, ErrLostFork) {
			t.Fatalf("the dropped entry again: %v", err)
		}
	})
	t.Run("a member does not beat an admin", func(t *testing.T) {
		g := newGroup(t)
		fork := g.log.Head()
		g.add(t, g.admin, Change{Kind: KindRemove, Account: g.m.id()})
		if _, err := g.log.Add(g.m.sign(t, fork, Change{Kind: KindPin, Ref: ref("p")})); !errors.Is(err, ErrLostFork) {
			t.Fatalf("member's concurrent change: %v", err)
		}
		if g.log.State().Role(g.m.id()) != RoleNone {
			t.Fatal("the removal was undone")
		}
	})
	t.Run("a removed member cannot fork back over its removal", func(t *testing.T) {
		// The attack found in review: Mallory pins, the admin removes her;
		// she forks her own pin with an entry whose hash she grinds below
		// the pin's, which under the hash rule alone won and dropped her
		// removal with it.
		g := newGroup(t)
		fork := g.log.Head()
		mine := g.add(t, g.m, Change{Kind: KindPin, Ref: ref("x")})
		g.add(t, g.admin, Change{Kind: KindRemove, Account: g.m.id()})
		var rival *Entry
		for i := int64(0); rival == nil; i++ {
			e, err := Sign(g.m.dev, g.m.cert, fork, fork.Time+1+i, Change{Kind: KindPin, Ref: ref("y")})
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Compare(e.hash[:], mine.hash[:]) < 0 {
				rival = e
			}
		}
		if _, err := g.log.Add(rival); !errors.Is(err, ErrLostFork) {
			t.Fatalf("the removed member's fork: %v", err)
		}
		if g.log.State().Role(g.m.id()) != RoleNone {
			t.Fatal("the removal was undone")
		}
		// Nor can a member's fork drop an admin's later entry.
		g2 := newGroup(t)
		fork2 := g2.log.Head()
		nsPin := g2.add(t, g2.n, Change{Kind: KindPin, Ref: ref("n")})
		g2.add(t, g2.admin, Change{Kind: KindTitle, Text: "admin's title"})
		var rival2 *Entry
		for i := int64(0); rival2 == nil; i++ {
			e, err := Sign(g2.m.dev, g2.m.cert, fork2, fork2.Time+1+i, Change{Kind: KindPin, Ref: ref("m")})
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Compare(e.hash[:], nsPin.hash[:]) < 0 {
				rival2 = e
			}
		}
		if _, err := g2.log.Add(rival2); !errors.Is(err, ErrLostFork) || g2.log.State().Title != "admin's title" {
			t.Fatalf("a member's fork over an admin's entry: %v, title %q", err, g2.log.State().Title)
		}
	})
	t.Run("history beyond the window is final", func(t *testing.T) {
		g := newGroup(t)
		fork := g.log.Head() // the admin is still an admin here
		g.add(t, g.owner, Change{Kind: KindDemote, Account: g.admin.id()})
		for i := range ForkWindow {
			g.add(t, g.owner, Change{Kind: KindPin, Ref: ref(fmt.Sprint(i))})
		}
		// An owner's entry would win a fork, but not this far back.
		if _, err := g.log.Add(g.owner.sign(t, fork, Change{Kind: KindTitle, Text: "x"})); !errors.Is(err, ErrFinal) {
			t.Fatalf("fork beyond the window: %v", err)
		}
	})
}

// TestUndo: after any sequence of forks the state equals a replay of the
// log from its start (the undo records take back exactly what each entry
// changed).
func TestUndo(t *testing.T) {
	g := newGroup(t)
	// A fixed seed: the walk is the same every run, so its coverage
	// floor below holds (with crypto/rand a CI run once applied 293,
	// under the floor).
	rng := mrand.New(mrand.NewPCG(7, 11))
	applied, forks := 0, 0
	for i := range 3000 {
		took, forked := g.randomStep(t, g.log, rng, i)
		if !took {
			continue
		}
		applied++
		if forked {
			forks++
		}
		checkReplays(t, g.log, fmt.Sprint("step ", i))
	}
	t.Logf("%d entries applied, %d forks won", applied, forks)
	if applied < 300 || forks < 30 {
		t.Fatalf("only %d entries applied, %d forks won: the test exercised too little", applied, forks)
	}
}

// randomStep signs one random change by a random user of g, after l's
// head or (one time in three) after one of its last entries (a fork),
// and adds it to l: whether l took it, and whether it won a fork.
func (g *group) randomStep(t *testing.T, l *Log, rng *mrand.Rand, i int) (took, forked bool) {
	t.Helper()
	users := []*user{g.owner, g.admin, g.m, g.n, g.outsider}
	cs := []Change{
		{Kind: KindTitle, Text: fmt.Sprint("t", i)},
		{Kind: KindDescription, Text: fmt.Sprint("d", i)},
		{Kind: KindPhoto, Ref: ref(fmt.Sprint("p", i)), Text: fmt.Sprint("s1.p", i)},
		{Kind: KindAdd, Account: g.outsider.id()},
		{Kind: KindRemove, Account: g.n.id()},
		{Kind: KindBan, Account: g.outsider.id()},
		{Kind: KindUnban, Account: g.outsider.id()},
		{Kind: KindPromote, Account: g.m.id()},
		{Kind: KindDemote, Account: g.m.id()},
		{Kind: KindPermissions, Perms: Perm(i) & permAll},
		{Kind: KindPin, Ref: ref(fmt.Sprint("m", i%3))},
		{Kind: KindUnpin, Ref: ref(fmt.Sprint("m", i%3))},
		{Kind: KindInviteCreate, Ref: invRef(fmt.Sprint("i", i%2))},
		{Kind: KindInviteRevoke, Ref: invRef(fmt.Sprint("i", i%2))},
		join(g, fmt.Sprint("i", i%2)),
		{Kind: KindLeave},
	}
	var prev *Entry
	if n := l.entries.len(); rng.IntN(3) == 0 && n > 2 {
		prev = l.entries.at(n - 1 - rng.IntN(min(n-1, ForkWindow))) // a fork
	} else {
		prev = l.Head()
	}
	u := users[rng.IntN(len(users))]
	c := cs[rng.IntN(len(cs))]
	if c.Kind == KindJoin { // the proof names whoever joins
		c.Text = InviteProof(inviteKey(fmt.Sprint("i", i%2)), l.Group(), u.id())
	}
	e, err := Sign(u.dev, u.cert, prev, prev.Time+1, c)
	if err != nil {
		t.Fatal(err)
	}
	dropped, err := l.Add(e)
	return err == nil, err == nil && dropped != nil
}

// checkReplays fails t unless l's state is what replaying its entries
// gives.
func checkReplays(t *testing.T, l *Log, what string) {
	t.Helper()
	want, err := Replay(l.Entries(0))
	if err != nil {
		t.Fatalf("%s: the log does not replay: %v", what, err)
	}
	if fmt.Sprint(*want.State()) != fmt.Sprint(*l.State()) {
		t.Fatalf("%s: state\n%+v\nreplayed\n%+v", what, *l.State(), *want.State())
	}
}

// TestCloneIndependent: copies of one log, each taking its own changes
// and forks (reverting the entries they share), leave the original and
// each other as they were: a node's cached verified log serves every
// reader through a Clone.
func TestCloneIndependent(t *testing.T) {
	g := newGroup(t)
	rng := mrand.New(mrand.NewPCG(3, 5))
	for i := range 200 {
		g.randomStep(t, g.log, rng, i)
	}
	before := func(l *Log) string { return fmt.Sprint(*l.State(), l.Entries(0), l.undos, l.final) }
	orig := before(g.log)
	var clones []*Log
	forks := 0
	for c := range 6 {
		cl := g.log.Clone()
		clones = append(clones, cl)
		for i := range 300 {
			if _, forked := g.randomStep(t, cl, rng, 1000*(c+1)+i); forked {
				forks++
			}
			checkReplays(t, cl, fmt.Sprint("clone ", c, " step ", i))
		}
		if got := before(g.log); got != orig {
			t.Fatalf("clone %d changed the original log", c)
		}
	}
	if forks < 20 {
		t.Fatalf("only %d forks in the clones: the test exercised too little", forks)
	}
	// The original goes on (forking back into entries its clones share)
	// and no clone moves with it.
	snaps := make([]string, len(clones))
	for i, cl := range clones {
		snaps[i] = before(cl)
	}
	for i := range 300 {
		g.randomStep(t, g.log, rng, 9000+i)
		checkReplays(t, g.log, fmt.Sprint("original step ", i))
	}
	for i, cl := range clones {
		if before(cl) != snaps[i] {
			t.Fatalf("the original's changes moved clone %d", i)
		}
	}
}

// TestClonesTakeApart: two clones of one log (and the log itself) each
// take a different next entry, and each keeps its own: none writes into
// the entries the others share.
func TestClonesTakeApart(t *testing.T) {
	g := newGroup(t)
	for len(g.log.entries.tail) == cap(g.log.entries.tail) { // room to append in place
		g.add(t, g.owner, Change{Kind: KindTitle, Text: "more"})
	}
	head := g.log.Head()
	logs := []*Log{g.log.Clone(), g.log.Clone(), g.log}
	var took []*Entry
	for i, l := range logs {
		e := g.owner.sign(t, head, Change{Kind: KindTitle, Text: fmt.Sprint("log ", i)})
		if _, err := l.Add(e); err != nil {
			t.Fatal(err)
		}
		took = append(took, e)
	}
	for i, l := range logs {
		if l.Head() != took[i] || l.State().Title != fmt.Sprint("log ", i) {
			t.Fatalf("log %d holds %q, not its own entry", i, l.State().Title)
		}
		checkReplays(t, l, fmt.Sprint("log ", i))
	}
}

// TestClonePinsApart: a log and its clone that each fork back over the
// same pin and pin something else keep their own pins (the undo they
// share holds the pins before it; one revert must not hand both states
// the same array to append to).
func TestClonePinsApart(t *testing.T) {
	g := newGroup(t)
	for i := range MaxPins - 2 { // pins whose copy gets spare capacity
		g.add(t, g.owner, Change{Kind: KindPin, Ref: ref(fmt.Sprint("pin", i))})
	}
	before := g.log.Head()
	g.add(t, g.admin, Change{Kind: KindPin, Ref: ref("admin's")})
	cl := g.log.Clone()
	mine := g.owner.sign(t, before, Change{Kind: KindPin, Ref: ref("clone's")})
	if _, err := cl.Add(mine); err != nil {
		t.Fatal(err)
	}
	theirs := g.owner.sign(t, before, Change{Kind: KindPin, Ref: ref("original's")})
	if _, err := g.log.Add(theirs); err != nil {
		t.Fatal(err)
	}
	checkReplays(t, cl, "the clone")
	checkReplays(t, g.log, "the original")
}

// FuzzParse: any bytes give an entry or ErrInvalid, never a panic; an
// entry parsed re-encodes to the same bytes.
func FuzzParse(f *testing.F) {
	u := newUser(f, "O")
	create, err := Sign(u.dev, u.cert, nil, 1_800_000_000_000, Change{Kind: KindCreate, Text: "g", Perms: DefaultPerms})
	if err != nil {
		f.Fatal(err)
	}
	raw, _ := create.MarshalBinary()
	f.Add(raw)
	next, _ := Sign(u.dev, u.cert, create, 1_800_000_001_000, Change{Kind: KindInviteCreate, Ref: ref("i"), Expires: 5})
	raw, _ = next.MarshalBinary()
	f.Add(raw)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Parse(b)
		// ParseAll, with the input between two good entries, agrees.
		es, errs := ParseAll([][]byte{raw, b, raw})
		if (err == nil) != (errs[1] == nil) || errs[0] != nil || errs[2] != nil || (err == nil && es[1].Hash() != e.Hash()) {
			t.Fatalf("ParseAll %v, Parse %v", errs, err)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		again, err := e.MarshalBinary()
		if err != nil || string(again) != string(b) {
			t.Fatalf("re-encoded differently (%v)", err)
		}
	})
}

// TestChannel: in a channel only admins post, add, pin, invite or change
// info, whatever the permission bits; no one turns a group into a
// channel or back.
func TestChannel(t *testing.T) {
	owner, admin, sub := newUser(t, "O"), newUser(t, "A"), newUser(t, "S")
	create := owner.sign(t, nil, Change{Kind: KindCreate, Text: "news", Perms: FlagChannel | DefaultPerms | PermInfo, Ref: ref("c")})
	l, err := NewLog(create)
	if err != nil {
		t.Fatal(err)
	}
	g := &group{log: l}
	g.add(t, owner, Change{Kind: KindAdd, Account: admin.id()})
	g.add(t, owner, Change{Kind: KindPromote, Account: admin.id()})
	g.add(t, admin, Change{Kind: KindAdd, Account: sub.id()})
	st := g.log.State()
	if !st.Channel() || st.MayPost(sub.id()) || !st.MayPost(admin.id()) || !st.MayPost(owner.id()) {
		t.Fatalf("channel %v, subscriber posts %v, admin posts %v", st.Channel(), st.MayPost(sub.id()), st.MayPost(admin.id()))
	}
	for _, c := range []Change{
		{Kind: KindAdd, Account: newUser(t, "Y").id()},
		{Kind: KindPin, Ref: ref("post")},
		{Kind: KindInviteCreate, Ref: invRef("i")},
		{Kind: KindTitle, Text: "mine now"},
		{Kind: KindPermissions, Perms: DefaultPerms},
	} {
		if _, err := g.log.Add(sub.sign(t, g.log.Head(), c)); !errors.Is(err, ErrForbidden) {
			t.Errorf("a subscriber's %s: %v", c.Kind, err)
		}
	}
	if _, err := g.log.Add(owner.sign(t, g.log.Head(), Change{Kind: KindPermissions, Perms: DefaultPerms})); !errors.Is(err, ErrForbidden) {
		t.Errorf("the owner turns the channel into a group: %v", err)
	}
	g.add(t, admin, Change{Kind: KindPin, Ref: ref("post")})
	grp := newGroup(t)
	if _, err := grp.log.Add(grp.owner.sign(t, grp.log.Head(), Change{Kind: KindPermissions, Perms: DefaultPerms | FlagChannel})); !errors.Is(err, ErrForbidden) {
		t.Errorf("the owner turns a group into a channel: %v", err)
	}
}

// TestInviteDiesWithItsCreatorsRight: a member removed from the group
// cannot come back through an invite link it created while a member (an
// outside review found it could); nor can anyone else once its creator
// may no longer add members.
func TestInviteDiesWithItsCreatorsRight(t *testing.T) {
	owner, mal, x := newUser(t, "owner"), newUser(t, "mallory"), newUser(t, "x")
	create := owner.sign(t, nil, Change{Kind: KindCreate, Text: "g", Perms: DefaultPerms, Ref: ref("n2")})
	l, err := NewLog(create)
	if err != nil {
		t.Fatal(err)
	}
	add := func(u *user, c Change) {
		t.Helper()
		if _, err := l.Add(u.sign(t, l.Head(), c)); err != nil {
			t.Fatal(err)
		}
	}
	add(owner, Change{Kind: KindAdd, Account: mal.id()})
	add(mal, Change{Kind: KindInviteCreate, Ref: invRef("mallory's link")})
	add(owner, Change{Kind: KindRemove, Account: mal.id()})
	for _, u := range []*user{mal, x} {
		j := u.sign(t, l.Head(), Change{Kind: KindJoin, Ref: invRef("mallory's link"), Text: InviteProof(inviteKey("mallory's link"), l.Group(), u.id())})
		if _, err := l.Add(j); !errors.Is(err, ErrForbidden) {
			t.Errorf("%s joins through a removed member's link: %v", u.name, err)
		}
	}
}

// TestPhotoForm: a photo entry holds the photo's hash and its sealed
// reference together (set) or neither (removed); the state keeps both,
// and an undo takes both back.
func TestPhotoForm(t *testing.T) {
	g := newGroup(t)
	head := g.log.Head()
	tests := []struct {
		name string
		c    Change
		ok   bool
	}{
		{"set", Change{Kind: KindPhoto, Ref: ref("photo"), Text: "s1.sealed"}, true},
		{"removed", Change{Kind: KindPhoto}, true},
		{"hash without reference", Change{Kind: KindPhoto, Ref: ref("photo")}, false},
		{"reference without hash", Change{Kind: KindPhoto, Text: "s1.sealed"}, false},
		{"reference over MaxText", Change{Kind: KindPhoto, Ref: ref("photo"), Text: strings.Repeat("x", MaxText+1)}, false},
	}
	for _, tc := range tests {
		_, err := Sign(g.admin.dev, g.admin.cert, head, now(head), tc.c)
		if tc.ok != (err == nil) {
			t.Errorf("%s: %v", tc.name, err)
		}
		if !tc.ok && !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, not ErrMalformed", tc.name, err)
		}
	}
	set := g.admin.sign(t, head, Change{Kind: KindPhoto, Ref: ref("photo"), Text: "s1.sealed"})
	if _, err := g.log.Add(set); err != nil {
		t.Fatal(err)
	}
	if st := g.log.State(); st.Photo != ref("photo") || st.PhotoRef != "s1.sealed" {
		t.Fatalf("state after the photo: %x %q", st.Photo, st.PhotoRef)
	}
	// The owner's concurrent title wins the fork: the photo is undone.
	title := g.owner.sign(t, head, Change{Kind: KindTitle, Text: "owner's"})
	if dropped, err := g.log.AddBranch([]*Entry{title}); err != nil || len(dropped) != 1 {
		t.Fatalf("owner's branch: %v, dropped %d", err, len(dropped))
	}
	if st := g.log.State(); st.Photo != ([32]byte{}) || st.PhotoRef != "" {
		t.Fatalf("state after the fork: %x %q", st.Photo, st.PhotoRef)
	}
}
