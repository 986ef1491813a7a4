package groupstate

import (
	"fmt"
	"maps"
	"slices"

	"github.com/peergram/peergram/crypto/identity"
)

// Role is a member's standing in a group.
type Role uint8

// Roles, in rising order of rights.
const (
	RoleNone   Role = 0 // not a member
	RoleMember Role = 1
	RoleAdmin  Role = 2
	RoleOwner  Role = 3
)

func (r Role) String() string {
	switch r {
	case RoleMember:
		return "member"
	case RoleAdmin:
		return "admin"
	case RoleOwner:
		return "owner"
	}
	return "none"
}

// withArticle is r with its indefinite article ("an owner").
func (r Role) withArticle() string {
	if r == RoleAdmin || r == RoleOwner {
		return "an " + r.String()
	}
	if r == RoleNone {
		return "not a member"
	}
	return "a " + r.String()
}

// DeniedError is an entry whose author may not make its change at that
// point of the log (errors.Is(err, ErrForbidden) holds). Why says what
// rule refused it, in words a user can be shown.
type DeniedError struct {
	Kind   Kind
	Author identity.AccountID
	Role   Role // the author's
	Why    string
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("%v: %s by %s (%s): %s", ErrForbidden, e.Kind, e.Author, e.Role, e.Why)
}

func (e *DeniedError) Unwrap() error { return ErrForbidden }

// GroupID names a group: the hash of its KindCreate entry.
type GroupID [32]byte

const (
	// MaxPins bounds the pinned messages of a group.
	MaxPins = 100
	// MaxInvites bounds the invite links a group has at once.
	MaxInvites = 100
	// MaxSkew is how far an entry's time may lie before the one it
	// follows (clocks differ); more is refused.
	MaxSkew = 10 * 60 * 1000
)

// Invite is an invite link of a group.
type Invite struct {
	Creator identity.AccountID
	Expires int64 // Unix ms; 0: never
}

// State is a group's state after some entry of its log. Apply changes it
// in place (a copy per entry would make a 200,000-member group's log
// quadratic to replay); Clone copies it.
type State struct {
	Group       GroupID
	Head        [32]byte // hash of the last entry applied
	Seq         uint64   // its Seq
	Time        int64    // its Time
	Title       string
	Description string
	Photo       [32]byte // the photo's content hash (zero: none)
	PhotoRef    string   // where to fetch it and its key, sealed by the members (KindPhoto's text)
	Owner       identity.AccountID
	Perms       Perm
	Members     map[identity.AccountID]Role // every member, RoleMember or higher
	Banned      map[identity.AccountID]bool
	Pins        [][32]byte // oldest first
	Invites     map[[32]byte]Invite
}

// New returns the state of a group after its first entry, which must be
// a valid KindCreate entry (as Parse or Sign returns it).
func New(create *Entry) (*State, error) {
	if create.Change.Kind != KindCreate || create.Seq != 0 {
		return nil, fmt.Errorf("%w: a group starts with its creation", ErrChain)
	}
	owner := create.Author()
	return &State{
		Group: GroupID(create.hash), Head: create.hash, Time: create.Time,
		Title: create.Change.Text, Owner: owner, Perms: create.Change.Perms,
		Members: map[identity.AccountID]Role{owner: RoleOwner},
		Banned:  map[identity.AccountID]bool{},
		Invites: map[[32]byte]Invite{},
	}, nil
}

// Role returns a's role (RoleNone if not a member).
func (s *State) Role(a identity.AccountID) Role { return s.Members[a] }

// Clone returns a copy of s that shares nothing with it.
func (s *State) Clone() *State {
	c := *s
	c.Members = maps.Clone(s.Members)
	c.Banned = maps.Clone(s.Banned)
	c.Pins = slices.Clone(s.Pins)
	c.Invites = maps.Clone(s.Invites)
	return &c
}

// Apply checks that e follows s (its Prev is s's head) and that its
// author may make its change, and applies it. On error s is unchanged.
func (s *State) Apply(e *Entry) error {
	_, err := s.applyUndo(e)
	return err
}

func (s *State) applyUndo(e *Entry) (*undo, error) {
	if e.Seq != s.Seq+1 || e.Prev != s.Head {
		return nil, fmt.Errorf("%w: entry %d after %x names %x as its predecessor", ErrChain, e.Seq, s.Head[:4], e.Prev[:4])
	}
	if e.Time < s.Time-MaxSkew {
		return nil, fmt.Errorf("%w: time %d is more than %d ms before the entry it follows", ErrChain, e.Time, MaxSkew)
	}
	if err := s.check(e); err != nil {
		return nil, err
	}
	u := s.apply(e)
	s.Head, s.Seq, s.Time = e.hash, e.Seq, e.Time
	return u, nil
}

// Permits reports whether e's author may make e's change in state s: its
// rights only (an invite's proof for a join), not whether e follows s.
func (s *State) Permits(e *Entry) error { return s.check(e) }

// check reports whether e's author may make e's change in state s.
func (s *State) check(e *Entry) error {
	c := e.Change
	author := e.Author()
	role := s.Members[author]
	deny := func(why string) error {
		return &DeniedError{Kind: c.Kind, Author: author, Role: role, Why: why}
	}
	target := s.Members[c.Account]
	may := func(p Perm) bool { return s.may(role, p) }
	if c.Kind != KindJoin && role == RoleNone {
		return deny("not a member")
	}
	switch c.Kind {
	case KindCreate:
		return deny("the group exists")
	case KindTitle, KindDescription, KindPhoto:
		if !may(PermInfo) {
			return deny("may not change the group's info")
		}
	case KindAdd:
		switch {
		case target != RoleNone:
			return deny("already a member")
		case s.Banned[c.Account] && role < RoleAdmin:
			return deny("banned: only an admin adds a banned account (which unbans it)")
		case !may(PermAdd):
			return deny("may not add members")
		}
	case KindRemove, KindBan:
		switch {
		case c.Account == author:
			return deny("leave instead")
		case c.Kind == KindRemove && target == RoleNone:
			return deny("not a member")
		case c.Kind == KindBan && s.Banned[c.Account]:
			return deny("already banned")
		case role < RoleAdmin || target >= role:
			return deny("may not remove " + target.withArticle())
		}
	case KindUnban:
		switch {
		case role < RoleAdmin:
			return deny("admins unban")
		case !s.Banned[c.Account]:
			return deny("not banned")
		}
	case KindPromote, KindDemote:
		want := RoleMember
		if c.Kind == KindDemote {
			want = RoleAdmin
		}
		switch {
		case role != RoleOwner:
			return deny("the owner promotes and demotes")
		case target != want:
			return deny("the account is " + target.withArticle())
		}
	case KindPermissions:
		switch {
		case role < RoleAdmin:
			return deny("admins set permissions")
		case (c.Perms^s.Perms)&FlagChannel != 0:
			return deny("a group does not become a channel, nor a channel a group")
		}
	case KindPin:
		switch {
		case !may(PermPin):
			return deny("may not pin")
		case slices.Contains(s.Pins, c.Ref):
			return deny("already pinned")
		case len(s.Pins) >= MaxPins:
			return deny(fmt.Sprintf("%d pins already", MaxPins))
		}
	case KindUnpin:
		switch {
		case !may(PermPin):
			return deny("may not unpin")
		case !slices.Contains(s.Pins, c.Ref):
			return deny("not pinned")
		}
	case KindInviteCreate:
		_, exists := s.Invites[c.Ref]
		switch {
		case !may(PermAdd):
			return deny("may not invite")
		case exists:
			return deny("invite exists")
		case len(s.Invites) >= MaxInvites:
			return deny(fmt.Sprintf("%d invites already", MaxInvites))
		}
	case KindInviteRevoke:
		inv, ok := s.Invites[c.Ref]
		switch {
		case !ok:
			return deny("no such invite")
		case role < RoleAdmin && inv.Creator != author:
			return deny("admins revoke others' invites")
		}
	case KindJoin:
		inv, ok := s.Invites[c.Ref]
		switch {
		case role != RoleNone:
			return deny("already a member")
		case s.Banned[author]:
			return deny("banned")
		case !ok:
			return deny("no such invite (or revoked)")
		case inv.Expires != 0 && e.Time >= inv.Expires:
			return deny("invite expired")
		case !validInviteProof(c.Ref, s.Group, author, c.Text):
			return deny("no proof of the invite link's key")
		case !s.may(s.Members[inv.Creator], PermAdd):
			// Its creator was removed, left, was demoted in a channel, or
			// members lost the right to add: the link dies with the right.
			return deny("the invite's creator may no longer add members")
		}
	case KindLeave:
		if role == RoleOwner {
			return deny("the owner does not leave")
		}
	}
	return nil
}

// undo is what an applied entry changed, to take it back (Log, forks).
type undo struct {
	head           [32]byte
	seq            uint64
	time           int64
	title, descr   string
	photo          [32]byte
	photoRef       string
	perms          Perm
	account        identity.AccountID // whose membership and ban changed
	role           Role
	banned         bool
	pins           [][32]byte
	pinsChanged    bool
	invite         [32]byte
	inviteWas      Invite
	inviteExisted  bool
	inviteChanged  bool
	accountChanged bool
}

// apply makes e's change to s (checked already) and returns how to undo it.
func (s *State) apply(e *Entry) *undo {
	c := e.Change
	u := &undo{head: s.Head, seq: s.Seq, time: s.Time, title: s.Title, descr: s.Description, photo: s.Photo, photoRef: s.PhotoRef, perms: s.Perms}
	touch := func(a identity.AccountID) {
		u.account, u.role, u.banned, u.accountChanged = a, s.Members[a], s.Banned[a], true
	}
	touchPins := func() { u.pins, u.pinsChanged = slices.Clone(s.Pins), true }
	touchInvite := func(ref [32]byte) {
		u.invite, u.inviteChanged = ref, true
		u.inviteWas, u.inviteExisted = s.Invites[ref]
	}
	switch c.Kind {
	case KindTitle:
		s.Title = c.Text
	case KindDescription:
		s.Description = c.Text
	case KindPhoto:
		s.Photo, s.PhotoRef = c.Ref, c.Text
	case KindAdd:
		touch(c.Account)
		s.Members[c.Account] = RoleMember
		delete(s.Banned, c.Account)
	case KindRemove:
		touch(c.Account)
		delete(s.Members, c.Account)
	case KindBan:
		touch(c.Account)
		delete(s.Members, c.Account)
		s.Banned[c.Account] = true
	case KindUnban:
		touch(c.Account)
		delete(s.Banned, c.Account)
	case KindPromote:
		touch(c.Account)
		s.Members[c.Account] = RoleAdmin
	case KindDemote:
		touch(c.Account)
		s.Members[c.Account] = RoleMember
	case KindPermissions:
		s.Perms = c.Perms
	case KindPin:
		touchPins()
		s.Pins = append(s.Pins, c.Ref)
	case KindUnpin:
		touchPins()
		s.Pins = slices.DeleteFunc(slices.Clone(s.Pins), func(r [32]byte) bool { return r == c.Ref })
	case KindInviteCreate:
		touchInvite(c.Ref)
		s.Invites[c.Ref] = Invite{Creator: e.Author(), Expires: c.Expires}
	case KindInviteRevoke:
		touchInvite(c.Ref)
		delete(s.Invites, c.Ref)
	case KindJoin:
		touch(e.Author())
		s.Members[e.Author()] = RoleMember
	case KindLeave:
		touch(e.Author())
		delete(s.Members, e.Author())
	}
	return u
}

// revert takes back the entry u was made for (the last one applied).
func (s *State) revert(u *undo) {
	s.Head, s.Seq, s.Time = u.head, u.seq, u.time
	s.Title, s.Description, s.Photo, s.PhotoRef, s.Perms = u.title, u.descr, u.photo, u.photoRef, u.perms
	if u.accountChanged {
		if u.role == RoleNone {
			delete(s.Members, u.account)
		} else {
			s.Members[u.account] = u.role
		}
		if u.banned {
			s.Banned[u.account] = true
		} else {
			delete(s.Banned, u.account)
		}
	}
	if u.pinsChanged {
		s.Pins = slices.Clone(u.pins) // u may serve a Clone of the log too
	}
	if u.inviteChanged {
		if u.inviteExisted {
			s.Invites[u.invite] = u.inviteWas
		} else {
			delete(s.Invites, u.invite)
		}
	}
}

// MayPost reports whether a may post messages in the group.
func (s *State) MayPost(a identity.AccountID) bool { return s.may(s.Members[a], PermSend) }

// MayChangeInfo reports whether a may change the title, description and
// photo.
func (s *State) MayChangeInfo(a identity.AccountID) bool { return s.may(s.Members[a], PermInfo) }

// may reports whether role has permission p (in a channel only admins
// have any).
func (s *State) may(role Role, p Perm) bool {
	return role >= RoleAdmin || (role == RoleMember && s.Perms&FlagChannel == 0 && s.Perms&p != 0)
}

// Channel reports whether the group is a channel (FlagChannel).
func (s *State) Channel() bool { return s.Perms&FlagChannel != 0 }
