package groupstate

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/internal/wire"
)

const (
	entryV1    = 1
	entryLabel = "peergram/group-entry/v1"
	hashLabel  = "peergram/group-entry-hash/v1"

	// MaxText bounds a title or description, in bytes of UTF-8.
	MaxText = 1024
	// MaxTitle bounds a title's plaintext, in bytes. Logs reach relays,
	// which verify them, so a node seals titles and descriptions (with
	// the group's info key, which members share and relays never get)
	// before it signs them: to this package a title is opaque text of
	// at most MaxText bytes.
	MaxTitle = 128
	// MaxDescription bounds a description's plaintext, in bytes: sealed
	// (prefix, key ID, nonce, tag, base64) it stays within MaxText.
	MaxDescription = 700
	// MaxEntrySize bounds an encoded entry.
	MaxEntrySize = 2048
	// maxCert bounds an encoded device certificate.
	maxCert = 512
)

// Errors. Every one wraps ErrInvalid, so a caller can drop any bad entry
// with one check.
var (
	ErrInvalid   = errors.New("groupstate: invalid entry")
	ErrMalformed = fmt.Errorf("%w: malformed", ErrInvalid)
	ErrSignature = fmt.Errorf("%w: bad signature or certificate", ErrInvalid)
	ErrChain     = fmt.Errorf("%w: does not follow the log", ErrInvalid)
	ErrForbidden = fmt.Errorf("%w: the author may not make this change", ErrInvalid)
	// ErrLostFork reports an entry that competes with one already in the
	// log and loses to it (see the package comment).
	ErrLostFork = fmt.Errorf("%w: loses to a concurrent change", ErrInvalid)
	// ErrFinal reports an entry that forks the log before its last
	// ForkWindow entries.
	ErrFinal = fmt.Errorf("%w: forks history that is final", ErrInvalid)
)

// Kind is what a Change does.
type Kind uint8

// Kinds of change.
const (
	KindCreate       Kind = 1  // Text: title; Perms: member permissions; Ref: random, makes the group ID unique
	KindTitle        Kind = 2  // Text
	KindDescription  Kind = 3  // Text
	KindPhoto        Kind = 4  // Ref: the photo's content hash; Text: its sealed reference (both zero: none)
	KindAdd          Kind = 5  // Account
	KindRemove       Kind = 6  // Account
	KindBan          Kind = 7  // Account (removed too if a member)
	KindUnban        Kind = 8  // Account
	KindPromote      Kind = 9  // Account: member → admin
	KindDemote       Kind = 10 // Account: admin → member
	KindPermissions  Kind = 11 // Perms
	KindPin          Kind = 12 // Ref: a message ID
	KindUnpin        Kind = 13 // Ref
	KindInviteCreate Kind = 14 // Ref: the invite's ID; Expires (0: never)
	KindInviteRevoke Kind = 15 // Ref
	KindJoin         Kind = 16 // Ref: the invite used
	KindLeave        Kind = 17
	maxKind               = KindLeave
)

var kindNames = [...]string{"", "create", "title", "description", "photo", "add", "remove", "ban", "unban",
	"promote", "demote", "permissions", "pin", "unpin", "invite-create", "invite-revoke", "join", "leave"}

func (k Kind) String() string {
	if k == 0 || k > maxKind {
		return fmt.Sprintf("kind(%d)", uint8(k))
	}
	return kindNames[k]
}

// Perm is a set of what members (not admins) may do.
type Perm uint8

// Member permissions.
const (
	PermSend Perm = 1 << iota // post messages
	PermAdd                   // add members, create invite links
	PermPin                   // pin and unpin messages
	PermInfo                  // change title, description, photo
	permAll       = PermSend | PermAdd | PermPin | PermInfo | FlagChannel

	// FlagChannel marks a channel: members (subscribers) only read; only
	// admins post, add, pin, invite and change info, whatever the other
	// bits say. Set at creation, never changed.
	FlagChannel Perm = 1 << 7
)

// DefaultPerms are Telegram's defaults for a new group: members post, add
// members and pin; changing the group's info is for admins.
const DefaultPerms = PermSend | PermAdd | PermPin

// Change is the content of an entry; see Kind for the fields each uses.
type Change struct {
	Kind    Kind
	Text    string
	Ref     [32]byte
	Account identity.AccountID
	Perms   Perm
	Expires int64 // Unix ms; 0: never
}

// Entry is one signed change of a group's log.
type Entry struct {
	Prev   [32]byte // hash of the entry before; zero for KindCreate
	Seq    uint64   // 0 for KindCreate
	Time   int64    // author's clock, Unix ms
	Cert   identity.DeviceCert
	Change Change
	Sig    []byte

	raw  []byte // encoding, set by Sign and Parse
	hash [32]byte
}

// Author is the account that made the change.
func (e *Entry) Author() identity.AccountID { return e.Cert.Account }

// Hash identifies the entry; the next entry names it as Prev.
func (e *Entry) Hash() [32]byte { return e.hash }

// MarshalBinary returns the entry's encoding.
func (e *Entry) MarshalBinary() ([]byte, error) {
	if e.raw == nil {
		return nil, fmt.Errorf("%w: not signed", ErrMalformed)
	}
	return append([]byte(nil), e.raw...), nil
}

// Sign makes and signs an entry of dev (certified by cert) that follows
// prev (nil for KindCreate). It checks the change's form, not the author's
// rights: State.Apply does.
func Sign(dev *identity.DeviceKey, cert *identity.DeviceCert, prev *Entry, now int64, c Change) (*Entry, error) {
	if cert.Device != dev.ID() {
		return nil, fmt.Errorf("%w: certificate of another device", ErrSignature)
	}
	e := &Entry{Time: now, Cert: *cert, Change: c}
	if prev != nil {
		e.Prev, e.Seq = prev.hash, prev.Seq+1
	}
	if err := e.checkForm(); err != nil {
		return nil, err
	}
	body, err := e.signedBytes()
	if err != nil {
		return nil, err
	}
	e.Sig = dev.Sign(entryLabel, body)
	e.seal(body)
	return e, nil
}

// Parse decodes an entry and checks its form and signatures (the device's
// over the entry, the account's over the device certificate). Whether it
// fits a log and its author's rights are checked by State.Apply.
func Parse(b []byte) (*Entry, error) {
	e, _, body, err := decode(b)
	if err != nil {
		return nil, err
	}
	if err := e.Cert.Verify(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSignature, err)
	}
	if err := e.verify(body); err != nil {
		return nil, err
	}
	return e, nil
}

// ParseAll parses each of raws as Parse does, and gives the same entries
// and errors (errs[i] is raws[i]'s), faster: a device certificate that
// several entries carry (one author's entries all do) is verified once,
// and the signatures are checked on GOMAXPROCS goroutines. A node reading
// a long log from its store after a start verifies every entry; this is
// what bounds that read.
func ParseAll(raws [][]byte) ([]*Entry, []error) {
	es := make([]*Entry, len(raws))
	errs := make([]error, len(raws))
	bodies := make([][]byte, len(raws))
	certKey := make([]string, len(raws))
	certs := map[string]*identity.DeviceCert{} // distinct certificates, by encoding
	for i, b := range raws {
		var certRaw []byte
		es[i], certRaw, bodies[i], errs[i] = decode(b)
		if errs[i] != nil {
			es[i] = nil
			continue
		}
		certKey[i] = string(certRaw)
		if certs[certKey[i]] == nil {
			certs[certKey[i]] = &es[i].Cert
		}
	}
	keys := make([]string, 0, len(certs))
	for k := range certs {
		keys = append(keys, k)
	}
	certErr := make([]error, len(keys))
	parallel(len(keys), func(j int) { certErr[j] = certs[keys[j]].Verify() })
	bad := map[string]error{}
	for j, k := range keys {
		if certErr[j] != nil {
			bad[k] = fmt.Errorf("%w: %w", ErrSignature, certErr[j])
		}
	}
	parallel(len(raws), func(i int) {
		if es[i] == nil {
			return
		}
		if err := bad[certKey[i]]; err != nil {
			es[i], errs[i] = nil, err
			return
		}
		if err := es[i].verify(bodies[i]); err != nil {
			es[i], errs[i] = nil, err
		}
	})
	return es, errs
}

// parallel runs fn(0) … fn(n−1) on up to GOMAXPROCS goroutines.
func parallel(n int, fn func(int)) {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			fn(i)
		}
		return
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		})
	}
	wg.Wait()
}

// decode decodes an entry and checks its form, not its signatures; it
// returns the certificate's encoding and the signed bytes too.
func decode(b []byte) (e *Entry, certRaw, body []byte, err error) {
	if len(b) > MaxEntrySize {
		return nil, nil, nil, fmt.Errorf("%w: %d bytes", ErrMalformed, len(b))
	}
	r := wire.NewReader(b)
	if v := r.Byte(); r.Err() == nil && v != entryV1 {
		return nil, nil, nil, fmt.Errorf("%w: version %d", ErrMalformed, v)
	}
	e = &Entry{}
	r.FixedInto(e.Prev[:])
	e.Seq = r.Uint64()
	e.Time = int64(r.Uint64())
	certRaw = r.Var(maxCert)
	e.Change.Kind = Kind(r.Byte())
	e.Change.Text = string(r.Var(MaxText))
	r.FixedInto(e.Change.Ref[:])
	r.FixedInto(e.Change.Account[:])
	e.Change.Perms = Perm(r.Byte())
	e.Change.Expires = int64(r.Uint64())
	e.Sig = r.Fixed(ed25519.SignatureSize)
	if err := r.Finish(); err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	cert, err := identity.ParseDeviceCert(certRaw)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	e.Cert = *cert
	if err := e.checkForm(); err != nil {
		return nil, nil, nil, err
	}
	return e, certRaw, b[:len(b)-ed25519.SignatureSize], nil
}

// verify checks the device's signature over body (the entry's signed
// bytes) and seals the entry.
func (e *Entry) verify(body []byte) error {
	if !identity.Verify(e.Cert.Device.PublicKey(), entryLabel, body, e.Sig) {
		return ErrSignature
	}
	e.seal(body)
	return nil
}

func (e *Entry) seal(body []byte) {
	e.raw = append(append(make([]byte, 0, len(body)+len(e.Sig)), body...), e.Sig...)
	h := sha256.New()
	h.Write([]byte(hashLabel))
	h.Write(e.raw)
	copy(e.hash[:], h.Sum(nil))
}

func (e *Entry) signedBytes() ([]byte, error) {
	cert, err := e.Cert.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if len(cert) > maxCert {
		return nil, fmt.Errorf("%w: certificate of %d bytes", ErrMalformed, len(cert))
	}
	w := wire.NewWriter(256 + len(cert) + len(e.Change.Text))
	w.Byte(entryV1)
	w.Fixed(e.Prev[:])
	w.Uint64(e.Seq)
	w.Uint64(uint64(e.Time))
	w.Var(cert)
	w.Byte(byte(e.Change.Kind))
	w.Var([]byte(e.Change.Text))
	w.Fixed(e.Change.Ref[:])
	w.Fixed(e.Change.Account[:])
	w.Byte(byte(e.Change.Perms))
	w.Uint64(uint64(e.Change.Expires))
	if n := len(w.Bytes()) + ed25519.SignatureSize; n > MaxEntrySize {
		return nil, fmt.Errorf("%w: %d bytes", ErrMalformed, n)
	}
	return w.Bytes(), nil
}

// checkForm checks what an entry's fields may hold whatever the log: a
// known kind, only the fields its kind uses, bounded valid text.
func (e *Entry) checkForm() error {
	c := e.Change
	bad := func(why string) error { return fmt.Errorf("%w: %s: %s", ErrMalformed, c.Kind, why) }
	if c.Kind == 0 || c.Kind > maxKind {
		return fmt.Errorf("%w: unknown kind %d", ErrMalformed, c.Kind)
	}
	if e.Time <= 0 {
		return bad("no time")
	}
	if (c.Kind == KindCreate) != (e.Seq == 0) || (e.Seq == 0 && e.Prev != [32]byte{}) {
		return bad("only the first entry creates, and it follows nothing")
	}
	var zero [32]byte
	usesText := c.Kind == KindCreate || c.Kind == KindTitle || c.Kind == KindDescription || c.Kind == KindJoin || c.Kind == KindPhoto
	usesRef := c.Kind == KindCreate || c.Kind == KindPhoto || c.Kind == KindPin || c.Kind == KindUnpin ||
		c.Kind == KindInviteCreate || c.Kind == KindInviteRevoke || c.Kind == KindJoin
	usesAccount := c.Kind >= KindAdd && c.Kind <= KindDemote
	usesPerms := c.Kind == KindCreate || c.Kind == KindPermissions
	switch {
	case !usesText && c.Text != "", !usesRef && c.Ref != zero, !usesAccount && c.Account != identity.AccountID{},
		!usesPerms && c.Perms != 0, c.Kind != KindInviteCreate && c.Expires != 0:
		return bad("a field its kind does not use is set")
	case c.Perms&^permAll != 0:
		return bad("unknown permission bits")
	case c.Expires < 0:
		return bad("negative expiry")
	case len(c.Text) > MaxText:
		return bad(fmt.Sprintf("text of %d bytes (at most %d)", len(c.Text), MaxText))
	case usesText && !utf8.ValidString(c.Text):
		return bad("text is not UTF-8")
	case (c.Kind == KindCreate || c.Kind == KindTitle) && (c.Text == "" || len(c.Text) > MaxText):
		return bad(fmt.Sprintf("title of %d bytes (1 to %d)", len(c.Text), MaxText))
	case c.Kind == KindPhoto && (c.Ref == zero) != (c.Text == ""):
		return bad("a photo is its hash and its sealed reference, or neither (none)")
	case usesAccount && c.Account == identity.AccountID{}:
		return bad("no account")
	case (c.Kind == KindPin || c.Kind == KindUnpin || c.Kind == KindInviteCreate || c.Kind == KindInviteRevoke || c.Kind == KindJoin) && c.Ref == zero:
		return bad("no reference")
	}
	return nil
}
