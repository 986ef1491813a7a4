package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"

	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/history"
	"github.com/peergram/peergram/storage"
)

// Invite links: peergram://join/<group ID hex>/<invite key seed,
// base64url>?relay=<multiaddr of a relay that keeps the group's history>.
// The group's log records the invite's public key (groupstate invite.go);
// whoever holds the link fetches the log from the relay, signs a join
// entry with the proof, and sends the longer log to every member over
// pairwise sessions (the members' keys come from the directory). The
// members hand the newcomer their Sender Keys chains, and the owner the
// group's info keys (its title).

const linkPrefix = "peergram://join/"

// inviteSeedKey (groups.sk: group || 'V' || public key) keeps the seeds of
// the invites this node made, so it can show and revoke them.
func inviteSeedKey(g groupstate.GroupID, pub []byte) []byte {
	return append(append(append([]byte(nil), g[:]...), 'V'), pub...)
}

// inviteLink is a parsed link.
type inviteLink struct {
	group groupstate.GroupID
	key   ed25519.PrivateKey
	relay *peer.AddrInfo // nil if the link names none
}

func (l *inviteLink) ref() (r [32]byte) {
	copy(r[:], l.key.Public().(ed25519.PublicKey))
	return r
}

func parseInviteLink(s string) (*inviteLink, error) {
	bad := fmt.Errorf("%w: not an invite link (%s<group>/<key>?relay=<multiaddr>)", chat.ErrInvalid, linkPrefix)
	if !strings.HasPrefix(s, linkPrefix) {
		return nil, bad
	}
	rest, query, _ := strings.Cut(strings.TrimPrefix(s, linkPrefix), "?")
	gid, seed, ok := strings.Cut(rest, "/")
	if !ok {
		return nil, bad
	}
	g, err := hex.DecodeString(gid)
	if err != nil || len(g) != 32 {
		return nil, bad
	}
	sd, err := base64.RawURLEncoding.DecodeString(seed)
	if err != nil || len(sd) != ed25519.SeedSize {
		return nil, bad
	}
	l := &inviteLink{group: groupstate.GroupID(g), key: ed25519.NewKeyFromSeed(sd)}
	if q, err := url.ParseQuery(query); err == nil && q.Get("relay") != "" {
		addr, err := ma.NewMultiaddr(q.Get("relay"))
		if err != nil {
			return nil, bad
		}
		if l.relay, err = peer.AddrInfoFromP2pAddr(addr); err != nil {
			return nil, bad
		}
	}
	return l, nil
}

func (n *Node) formatLink(g groupstate.GroupID, seed []byte) string {
	s := linkPrefix + hex.EncodeToString(g[:]) + "/" + base64.RawURLEncoding.EncodeToString(seed)
	if addrs := n.relayAddrs(); len(addrs) > 0 {
		s += "?relay=" + url.QueryEscape(addrs[0])
	}
	return s
}

// CreateInvite makes an invite link to a group (expiresIn 0: it does not
// expire); members may if the group's permissions let them add members.
func (n *Node) CreateInvite(ctx context.Context, group string, expiresIn time.Duration) (chat.Invite, error) {
	if expiresIn < 0 {
		return chat.Invite{}, fmt.Errorf("%w: a negative expiry", chat.ErrInvalid)
	}
	seed := make([]byte, ed25519.SeedSize)
	if _, err := rand.Read(seed); err != nil {
		return chat.Invite{}, err
	}
	key := ed25519.NewKeyFromSeed(seed)
	var ref [32]byte
	copy(ref[:], key.Public().(ed25519.PublicKey))
	var expires int64
	if expiresIn > 0 {
		expires = n.cfg.Now().Add(expiresIn).UnixMilli()
	}
	var gid groupstate.GroupID
	g, err := n.changeGroup(group, func(tx *storage.Txn, l *groupstate.Log) ([]groupstate.Change, error) {
		gid = l.Group()
		if err := tx.Set(n.st.groupKeys, inviteSeedKey(gid, ref[:]), seed); err != nil {
			return nil, err
		}
		return []groupstate.Change{{Kind: groupstate.KindInviteCreate, Ref: ref, Expires: expires}}, nil
	})
	if err != nil {
		return chat.Invite{}, err
	}
	// The link is handed out as soon as it is printed, and a join by it
	// fetches the group's log from a relay: the log that holds the link
	// goes to the home relays now, not at the history loop's next round.
	n.registerNow(ctx, gid)
	inv := chat.Invite{Link: n.formatLink(gid, seed), Group: g.ID}
	if expires != 0 {
		inv.Expires = ptr(time.UnixMilli(expires).UTC())
	}
	return inv, nil
}

// RevokeInvite revokes an invite link of a group.
// A leaked link stops working once the relays hold the revoke: it goes
// to them now.
func (n *Node) RevokeInvite(ctx context.Context, group, link string) (chat.Group, error) {
	l, err := parseInviteLink(strings.TrimSpace(link))
	if err != nil {
		return chat.Group{}, err
	}
	g, err := n.changeGroup(group, func(tx *storage.Txn, lg *groupstate.Log) ([]groupstate.Change, error) {
		if lg.Group() != l.group {
			return nil, fmt.Errorf("%w: the link is another group's", chat.ErrInvalid)
		}
		return []groupstate.Change{{Kind: groupstate.KindInviteRevoke, Ref: l.ref()}}, nil
	})
	if err != nil {
		return chat.Group{}, err
	}
	n.registerNow(ctx, l.group)
	return g, nil
}

// joinByLink joins a group with an invite link; name, if not nil, is the
// public name record the link came from, whose signer must be an admin of
// the group the log shows (a relay could answer any link for a name).
func (n *Node) joinByLink(ctx context.Context, link string, name *history.NameRecord) (chat.Group, error) {
	l, err := parseInviteLink(link)
	if err != nil {
		return chat.Group{}, err
	}
	err = n.db.View(func(tx *storage.Txn) error {
		_, err := n.findGroup(tx, hex.EncodeToString(l.group[:]))
		return err
	})
	if err == nil {
		if st := n.groupState(l.group); st != nil && st.Role(n.keys.account.ID()) != groupstate.RoleNone {
			return chat.Group{}, fmt.Errorf("%w: you are a member of this group already", chat.ErrInvalid)
		}
	}
	// The group's log, from the link's relay or the home relays.
	var relays []peer.AddrInfo
	if l.relay != nil {
		relays = append(relays, *l.relay)
	}
	relays = append(relays, n.relays...)
	c := history.NewClient(n.host)
	var entries, lists [][]byte
	var errs []error
	for _, r := range relays {
		n.host.Peerstore().AddAddrs(r.ID, r.Addrs, time.Hour)
		fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		entries, lists, err = c.Log(fctx, r.ID, l.group)
		cancel()
		if err == nil {
			break
		}
		errs = append(errs, fmt.Errorf("relay %s: %w", r.ID, err))
	}
	if entries == nil {
		return chat.Group{}, logFetchErr(errs)
	}
	parsed := make([]*groupstate.Entry, 0, len(entries))
	// Entries dated far ahead (a relay's clock wrong, or the relay
	// lying): the join follows what comes before them. The allowance is
	// twice the members' (maxEntryAhead), so that a joiner whose clock
	// is a little slow still follows what members took: a join that
	// stopped short would fork the log at an entry members hold and lose
	// (outside review).
	ahead := n.cfg.Now().Add(2 * maxEntryAhead).UnixMilli()
	for _, raw := range entries {
		e, err := groupstate.Parse(raw)
		if err != nil {
			return chat.Group{}, fmt.Errorf("%w: the relay's log: %w", chat.ErrUnavailable, err)
		}
		if e.Time > ahead {
			break
		}
		parsed = append(parsed, e)
	}
	lg, err := groupstate.Replay(parsed)
	if err != nil || lg.Group() != l.group {
		return chat.Group{}, fmt.Errorf("%w: the relay's log does not verify (%v)", chat.ErrUnavailable, err)
	}
	if name != nil && !signedByAdmin(lg.State(), lists, name.Device) {
		return chat.Group{}, fmt.Errorf("%w: the name @%s is not signed by an admin of the group it names", chat.ErrUnavailable, name.Name)
	}
	self := n.keys.account.ID()
	n.mu.Lock()
	cert := n.keys.cert
	n.mu.Unlock()
	e, err := groupstate.Sign(n.keys.device, cert, lg.Head(), entryTime(n.cfg.Now().UnixMilli(), lg.Head()),
		groupstate.Change{Kind: groupstate.KindJoin, Ref: l.ref(), Text: groupstate.InviteProof(l.key, l.group, self)})
	if err != nil {
		return chat.Group{}, err
	}
	if _, err := lg.Add(e); err != nil {
		if errors.Is(err, groupstate.ErrForbidden) {
			return chat.Group{}, denied(err) // revoked, expired, banned
		}
		return chat.Group{}, err
	}
	// The members' keys, to send them the longer log.
	n.learnMembers(ctx, lg.State())
	var notify []identity.AccountID
	var envs [][]byte
	var raws [][]byte
	for _, e := range lg.Entries(0) {
		raw, err := e.MarshalBinary()
		if err != nil {
			return chat.Group{}, err
		}
		raws = append(raws, raw)
	}
	// A log too large for one transaction is staged first (after the
	// log held from before, if any, is deleted).
	staged := n.largeLog(raws)
	if staged {
		if err := n.clearLogOutside(l.group, true); err != nil {
			return chat.Group{}, linkJoinErr(err)
		}
		if err := n.stageLog(l.group, raws); err != nil {
			_ = n.unstage(l.group, len(raws))
			if errors.Is(err, errStageRaced) {
				// (Stored meanwhile: as a member, say so.)
				if e := n.db.View(func(tx *storage.Txn) error { return n.notMemberTx(tx, l.group) }); e != nil {
					err = e
				}
			}
			return chat.Group{}, linkJoinErr(err)
		}
	}
	err = n.db.Update(func(tx *storage.Txn) error {
		// (A log of the group held from before — this account left it —
		// is replaced whole.)
		if staged {
			if err := n.checkStaged(tx, l.group, raws); err != nil {
				return err
			}
		} else if err := n.notMemberTx(tx, l.group); err != nil {
			return err
		} else if err := n.clearGroupLog(tx, l.group); err != nil {
			return err
		}
		for seq, raw := range raws {
			if staged && seq > 0 {
				break // written already
			}
			if err := n.putEntry(tx, l.group, uint64(seq), raw); err != nil {
				return err
			}
		}
		if err := n.dropInvitations(tx, l.group[:]); err != nil {
			return err
		}
		var members []identity.AccountID
		envs = nil
		if n.gossipsLog(lg.State()) {
			// A large group's members take the join from gossip (or a
			// relay's history: the join waits in groups.unconf until a
			// home relay shows it).
			envs, err = n.sealEntries(tx, l.group, []*groupstate.Entry{e})
			if err != nil {
				return err
			}
		} else {
			for a := range lg.State().Members {
				members = append(members, a)
			}
		}
		notify, err = n.sendGroupLog(tx, lg, members, e.Seq)
		return err
	})
	if err != nil {
		if staged {
			_ = n.unstage(l.group, len(raws))
		}
		return chat.Group{}, linkJoinErr(err)
	}
	n.groupChanged(n.runCtx, lg.State())
	n.notify(notify...)
	if len(envs) > 0 {
		// Published once the topic has a peer (the join just joined it).
		go func() {
			for i := 0; i < 50 && len(n.groups.net.Peers(l.group)) == 0; i++ {
				time.Sleep(100 * time.Millisecond)
			}
			n.publishEnvelopes(n.runCtx, l.group, envs)
		}()
	}
	return n.groupView(lg.State())
}

// logFetchErr is the error of a join whose relays all failed to give
// the group's log (errs: one per relay), on one line.
func logFetchErr(errs []error) error {
	unknown := len(errs) > 0
	texts := make([]string, 0, len(errs))
	for _, err := range errs {
		unknown = unknown && errors.Is(err, history.ErrUnknownGroup)
		texts = append(texts, err.Error())
	}
	if unknown {
		return fmt.Errorf("%w: no relay asked holds this group's log yet (the link's group is unknown there, or its admin's node has not reached a relay since making the link); try again later", chat.ErrUnavailable)
	}
	return fmt.Errorf("%w: the group's log: %s", chat.ErrUnavailable, strings.Join(texts, "; "))
}

// signedByAdmin reports whether dev is on the verified device list of an
// admin (or the owner) of st.
func signedByAdmin(st *groupstate.State, lists [][]byte, dev identity.DeviceID) bool {
	for _, raw := range lists {
		dl, err := identity.ParseDeviceList(raw)
		if err != nil || st.Role(dl.Account) < groupstate.RoleAdmin || dl.Verify(dl.Account) != nil {
			continue
		}
		if _, err := dl.Lookup(dev); err == nil {
			return true
		}
	}
	return false
}

// linkJoinErr is err as a join by link answers it: a membership stored
// while the join fetched the group's log is the user's error (already a
// member), as it is when found before.
func linkJoinErr(err error) error {
	if errors.Is(err, errStillMember) {
		return fmt.Errorf("%w: you are a member of this group already", chat.ErrInvalid)
	}
	return err
}
