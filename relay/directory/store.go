package directory

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/crypto/pqxdh"
	"github.com/peergram/peergram/storage"
)

// Keyspace names (see doc.go, "Storage").
const (
	ksLists   = "directory.list"
	ksHeads   = "directory.head"
	ksPrekeys = "directory.otk"
	ksRecords = "directory.record"
	ksGone    = "directory.gone"
	ksCursors = "directory.next"
	ksTouched = "directory.touched"
	ksOwners  = "directory.owner"
	ksMarks   = "directory.mark"
	ksMeta    = "directory.meta"
	ksHistory = "directory.history"
)

// maxHistory is how many versions of an account's list the directory
// keeps, so a client that knows an older one can check every link to the
// newest (a device re-signs its list weekly: about five years).
const maxHistory = 256

// schemaKey in ksMeta holds the storage schema version; schema 2 added the
// touched and owner keyspaces, which Start fills in for older stores.
var schemaKey = []byte("schema")

const schema = 2

const (
	headV1 = 0x01

	// sweepChunk bounds the deletes of one sweep transaction, far below
	// Badger's per-transaction entry limit.
	sweepChunk = 1024

	// lockStripes is the number of per-account publish locks.
	lockStripes = 64
)

// kinds are the one-time prekey kinds in the order of head.hwm.
var kinds = [2]byte{pqxdh.KindX25519, pqxdh.KindMLKEM768}

// store is the directory's state in a storage.DB. Publishes of one
// account are serialized by a striped lock, because dropping a device
// takes more than one transaction (see sweep); fetches rely on Badger's
// conflict detection alone, so two fetches racing for one one-time prekey
// conflict and the loser retries with the next one.
type store struct {
	db                                            *storage.DB
	lists, heads, prekeys, records, gone, cursors storage.Keyspace
	touched, owners, marks, meta, history         storage.Keyspace

	maxOneTime int   // per device and kind
	quota      int64 // bytes per account

	locks [lockStripes]sync.Mutex
}

func newStore(db *storage.DB, maxOneTime int, quota int64) *store {
	return &store{
		db:         db,
		lists:      db.Keyspace(ksLists),
		heads:      db.Keyspace(ksHeads),
		prekeys:    db.Keyspace(ksPrekeys),
		records:    db.Keyspace(ksRecords),
		gone:       db.Keyspace(ksGone),
		cursors:    db.Keyspace(ksCursors),
		touched:    db.Keyspace(ksTouched),
		owners:     db.Keyspace(ksOwners),
		marks:      db.Keyspace(ksMarks),
		history:    db.Keyspace(ksHistory),
		meta:       db.Keyspace(ksMeta),
		maxOneTime: maxOneTime,
		quota:      quota,
	}
}

// lock takes the publish lock of account a and returns its unlock.
func (st *store) lock(a identity.AccountID) func() {
	mu := &st.locks[a[0]%lockStripes]
	mu.Lock()
	return mu.Unlock
}

// deviceKey is the key of a device's head, record and gone marker, and
// the prefix of its one-time prekeys: account[32] | device[32]. The
// account is part of it because any account may certify any device key:
// another account listing (and then dropping) a device must not touch the
// device's entries under its real account.
func deviceKey(a identity.AccountID, d identity.DeviceID) []byte {
	k := make([]byte, 0, 64+1+4)
	k = append(k, a[:]...)
	return append(k, d[:]...)
}

func prekeyKey(dev []byte, kind byte, id uint32) []byte {
	k := make([]byte, 0, len(dev)+1+4)
	k = append(k, dev...)
	k = append(k, kind)
	return appendU32(k, id)
}

// head is a device's stored bundle without one-time prekeys, plus the
// highest one-time prekey ID ever accepted per kind. A one-time prekey
// is stored only if its ID is above that mark, so one already handed out
// (and deleted) is never stored again, however often the bundle that
// carried it is published: pqxdh allocates IDs in increasing order.
type head struct {
	hwm    [2]uint32 // by position in kinds
	bundle *pqxdh.Bundle
}

func (h *head) marshal() ([]byte, error) {
	b, err := h.bundle.MarshalBinary()
	if err != nil {
		return nil, err
	}
	v := make([]byte, 0, 9+len(b))
	v = append(v, headV1)
	v = appendU32(v, h.hwm[0])
	v = appendU32(v, h.hwm[1])
	return append(v, b...), nil
}

func parseHead(v []byte) (*head, error) {
	r := newReader(v)
	if ver := r.U8(); r.Err() == nil && ver != headV1 {
		return nil, fmt.Errorf("head version %#x", ver)
	}
	h := &head{}
	h.hwm[0] = r.U32()
	h.hwm[1] = r.U32()
	if r.Err() != nil {
		return nil, r.Err()
	}
	b, err := pqxdh.ParseBundle(r.Rest())
	if err != nil {
		return nil, err
	}
	if len(b.OneTime) != 0 || len(b.OneTimePQ) != 0 {
		return nil, errors.New("head holds one-time prekeys")
	}
	h.bundle = b
	return h, nil
}

// getHead returns the head stored under dev, or nil if there is none.
func (st *store) getHead(tx *storage.Txn, dev []byte) (*head, error) {
	v, err := tx.Get(st.heads, dev)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	h, err := parseHead(v)
	if err != nil {
		return nil, fmt.Errorf("%w: stored bundle: %v", ErrInternal, err)
	}
	return h, nil
}

// publishReq is a Publish whose objects decoded and whose signatures
// verified (see validatePublish); what is left is checking it against the
// stored state.
type publishReq struct {
	list      *identity.DeviceList
	listRaw   []byte
	bundle    *pqxdh.Bundle // nil if none
	record    *Record       // nil if none
	recordRaw []byte
	now       int64 // unix seconds, the publish time
}

// publishOutcome says what a publish changed, for logs and metrics.
type publishOutcome struct {
	listStored bool   // the list was new to this relay
	dropped    int    // devices removed from the list
	added      [2]int // one-time prekeys stored, by position in kinds
	capped     [2]int // new one-time prekeys not stored: the device holds MaxOneTime
	overQuota  [2]int // new one-time prekeys not stored: the account's quota is full
	stock      [2]int // one-time prekeys stored for the bundle's device afterwards
	sweepErr   error  // dropping prekeys after the commit failed; retried later
}

// publish applies req in one transaction: all of it, or nothing. Then,
// still under the account's lock, it deletes the one-time prekeys of
// devices the new list dropped.
func (st *store) publish(req *publishReq) (publishOutcome, error) {
	acct := req.list.Account
	unlock := st.lock(acct)
	defer unlock()
	// A sweep left over from a failed attempt must finish before this
	// publish may store prekeys for a device it marked.
	if err := st.sweep(acct[:]); err != nil {
		return publishOutcome{}, fmt.Errorf("%w: %w", ErrInternal, err)
	}
	var out publishOutcome
	err := st.db.Update(func(tx *storage.Txn) error {
		out = publishOutcome{} // Update may run fn more than once
		return st.publishTxn(tx, req, &out)
	})
	if err != nil {
		return publishOutcome{}, err
	}
	if out.dropped > 0 {
		out.sweepErr = st.sweep(acct[:])
	}
	return out, nil
}

func (st *store) publishTxn(tx *storage.Txn, req *publishReq, out *publishOutcome) error {
	acct := req.list.Account
	if err := tx.Set(st.touched, acct[:], appendU64(nil, uint64(req.now))); err != nil {
		return err
	}
	stored, err := st.getList(tx, acct)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if stored != nil {
		// CheckUpdate accepts the identical list (idempotent publish).
		if err := req.list.CheckUpdate(stored); err != nil {
			return foreign(err)
		}
	}
	if stored == nil || stored.Version != req.list.Version {
		if err := tx.Set(st.lists, acct[:], req.listRaw); err != nil {
			return err
		}
		out.listStored = true
		if err := st.keepHistory(tx, stored, req.list, req.listRaw); err != nil {
			return err
		}
		if stored != nil {
			if err := st.dropUnlisted(tx, stored, req.list, out); err != nil {
				return err
			}
		}
	}
	if req.record != nil {
		if err := st.putRecord(tx, acct, req.record, req.recordRaw); err != nil {
			return err
		}
		if err := st.touchDevice(tx, acct, req.record.Device, req.now); err != nil {
			return err
		}
	}
	if req.bundle != nil {
		// After the list and record, so the quota counts them as stored.
		if err := st.putBundle(tx, req.list, req.bundle, out); err != nil {
			return err
		}
		if err := st.touchDevice(tx, acct, req.bundle.Device, req.now); err != nil {
			return err
		}
	}
	return nil
}

func historyKey(a identity.AccountID, version uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, 40), a[:]...), version)
}

// keepHistory stores next (raw) as a version of its account's history,
// and prev too if a store from before history kept it not, and forgets
// the version maxHistory behind.
func (st *store) keepHistory(tx *storage.Txn, prev, next *identity.DeviceList, raw []byte) error {
	a := next.Account
	if prev != nil {
		if ok, err := tx.Has(st.history, historyKey(a, prev.Version)); err != nil {
			return err
		} else if !ok {
			prevRaw, err := prev.MarshalBinary()
			if err != nil {
				return err
			}
			if err := tx.Set(st.history, historyKey(a, prev.Version), prevRaw); err != nil {
				return err
			}
		}
	}
	if err := tx.Set(st.history, historyKey(a, next.Version), raw); err != nil {
		return err
	}
	if next.Version > maxHistory {
		return tx.Delete(st.history, historyKey(a, next.Version-maxHistory))
	}
	return nil
}

// listHistory returns the stored lists of a with versions from..to, oldest
// first, at most MaxHistoryLists.
func (st *store) listHistory(a identity.AccountID, from, to uint64) ([][]byte, error) {
	var out [][]byte
	err := st.db.View(func(tx *storage.Txn) error {
		return tx.IterateFrom(st.history, a[:], binary.BigEndian.AppendUint64(nil, from), func(k, v []byte) error {
			if len(k) != 40 || binary.BigEndian.Uint64(k[32:]) > to || len(out) == MaxHistoryLists {
				return storage.ErrStop
			}
			out = append(out, bytes.Clone(v))
			return nil
		})
	})
	return out, err
}

// touchDevice records that dev published at now, and that acct lists it
// (the owner index Stock looks devices up in).
func (st *store) touchDevice(tx *storage.Txn, acct identity.AccountID, dev identity.DeviceID, now int64) error {
	if err := tx.Set(st.touched, deviceKey(acct, dev), appendU64(nil, uint64(now))); err != nil {
		return err
	}
	return tx.Set(st.owners, ownerKey(dev, acct), nil)
}

// ownerKey is the key of the owner index: device[32] | account[32].
func ownerKey(d identity.DeviceID, a identity.AccountID) []byte {
	k := make([]byte, 0, 64)
	return append(append(k, d[:]...), a[:]...)
}

// dropUnlisted deletes the head and record of every device of old that
// next no longer lists, and marks its one-time prekeys for the sweep
// (there may be thousands: too many for this transaction).
func (st *store) dropUnlisted(tx *storage.Txn, old, next *identity.DeviceList, out *publishOutcome) error {
	for i := range old.Devices {
		d := old.Devices[i].Device
		if _, err := next.Lookup(d); err == nil {
			continue
		}
		if err := st.dropDevice(tx, old.Account, d); err != nil {
			return err
		}
		out.dropped++
	}
	return nil
}

// dropDevice deletes the head, record and cursor of a device, forgets
// that the account lists it, marks its one-time prekeys for the sweep and
// remembers its cursor for markTTL: should the device come back (listed
// again, or publishing after it expired), a replayed old bundle must not
// bring back prekeys already handed out.
func (st *store) dropDevice(tx *storage.Txn, acct identity.AccountID, d identity.DeviceID) error {
	k := deviceKey(acct, d)
	h, err := st.getHead(tx, k)
	if err != nil {
		return err
	}
	if h != nil {
		next, err := st.getCursor(tx, k)
		if err != nil {
			return err
		}
		m := mark{next: next, signed: h.bundle.SignedPrekey.ID, lastResort: h.bundle.LastResortPQ.ID}
		if err := tx.SetTTL(st.marks, k, m.marshal(), markTTL); err != nil {
			return err
		}
	}
	for _, ks := range []storage.Keyspace{st.heads, st.records, st.cursors, st.touched} {
		if err := tx.Delete(ks, k); err != nil {
			return err
		}
	}
	if err := tx.Delete(st.owners, ownerKey(d, acct)); err != nil {
		return err
	}
	return tx.Set(st.gone, k, nil)
}

// mark is what the relay remembers of a device it deleted: its cursor
// (one above the last one-time prekey handed out, per kind: every prekey
// handed out has a lower ID, since the lowest goes first), and the IDs of
// its last signed and last-resort prekeys. A replay of an old bundle can
// then neither bring back prekeys handed out nor roll back the signed
// ones; the device's prekeys never handed out are stored again.
type mark struct {
	next               [2]uint32
	signed, lastResort uint32
}

func (m mark) marshal() []byte {
	return appendU32(appendU32(appendU32(appendU32(make([]byte, 0, 16), m.next[0]), m.next[1]), m.signed), m.lastResort)
}

// getMark returns the mark of a deleted device, and false if there is
// none.
func (st *store) getMark(tx *storage.Txn, dev []byte) (mark, bool, error) {
	v, err := tx.Get(st.marks, dev)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return mark{}, false, nil
	case err != nil:
		return mark{}, false, err
	case len(v) != 16:
		return mark{}, false, fmt.Errorf("%w: stored mark of %d bytes", ErrInternal, len(v))
	}
	be := binary.BigEndian
	return mark{next: [2]uint32{be.Uint32(v), be.Uint32(v[4:])}, signed: be.Uint32(v[8:]), lastResort: be.Uint32(v[12:])}, true, nil
}

// putBundle replaces the device's signed and last-resort prekeys and adds
// the one-time prekeys above the device's high-water marks, lowest IDs
// first, while the device holds fewer than maxOneTime of a kind and the
// account's objects stay within the quota.
func (st *store) putBundle(tx *storage.Txn, list *identity.DeviceList, b *pqxdh.Bundle, out *publishOutcome) error {
	acct := list.Account
	dev := deviceKey(acct, b.Device)
	old, err := st.getHead(tx, dev)
	if err != nil {
		return err
	}
	cur, err := st.getCursor(tx, dev)
	if err != nil {
		return err
	}
	h := &head{}
	if old != nil {
		if err := notOlder("signed prekey", b.SignedPrekey, old.bundle.SignedPrekey); err != nil {
			return err
		}
		if err := notOlder("last-resort prekey", b.LastResortPQ, old.bundle.LastResortPQ); err != nil {
			return err
		}
		h.hwm = old.hwm
	} else {
		m, ok, err := st.getMark(tx, dev)
		if err != nil {
			return err
		}
		if ok {
			for _, c := range []struct {
				what      string
				next, old uint32
			}{{"signed prekey", b.SignedPrekey.ID, m.signed}, {"last-resort prekey", b.LastResortPQ.ID, m.lastResort}} {
				if c.next < c.old {
					return fmt.Errorf("%w: %s %d is older than the %d of the device's last bundle", ErrRollback, c.what, c.next, c.old)
				}
			}
			for i, n := range m.next {
				h.hwm[i] = max(n, 1) - 1 // IDs from next on were never handed out
			}
			if m.next != cur {
				cur = m.next
				if err := tx.Set(st.cursors, dev, appendU32(appendU32(make([]byte, 0, 8), cur[0]), cur[1])); err != nil {
					return err
				}
			}
		}
	}
	hb := *b
	hb.OneTime, hb.OneTimePQ = nil, nil
	h.bundle = &hb
	v, err := h.marshal()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	// The head is stored (with the marks of the prekeys added) below; the
	// quota counts it at its new size now.
	used, err := st.usage(tx, list, b.Device)
	if err != nil {
		return err
	}
	used += int64(len(v))
	stock, err := st.counts(tx, dev, cur)
	if err != nil {
		return err
	}
	for i, n := range stock {
		used += int64(n) * prekeySize(kinds[i])
	}
	for i, keys := range [2][]pqxdh.SignedKey{b.OneTime, b.OneTimePQ} {
		keys = slices.SortedFunc(slices.Values(keys), func(x, y pqxdh.SignedKey) int { return cmp.Compare(x.ID, y.ID) })
		size := prekeySize(kinds[i])
		for _, k := range keys {
			switch {
			case k.ID <= h.hwm[i]:
				continue // known, or already handed out
			case stock[i] >= st.maxOneTime:
				out.capped[i]++ // may be published again once some are taken
				continue
			case used+size > st.quota:
				out.overQuota[i]++
				continue
			}
			v := make([]byte, 0, len(k.Pub)+len(k.Sig))
			v = append(append(v, k.Pub...), k.Sig...)
			if err := tx.Set(st.prekeys, prekeyKey(dev, kinds[i], k.ID), v); err != nil {
				return err
			}
			h.hwm[i] = k.ID
			stock[i]++
			used += size
			out.added[i]++
		}
	}
	out.stock = stock
	if v, err = h.marshal(); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return tx.Set(st.heads, dev, v)
}

// prekeySize is what one stored one-time prekey of a kind counts against
// the account's quota: its encoded size (ID, public key, signature).
func prekeySize(kind byte) int64 {
	if kind == pqxdh.KindMLKEM768 {
		return oneTimePQSize
	}
	return oneTimeSize
}

// usage returns the bytes list's account stores, counted at the encoded
// sizes: the list as stored, and per listed device its head, record and
// one-time prekeys, except the head and prekeys of device skip (the
// caller is replacing them).
func (st *store) usage(tx *storage.Txn, list *identity.DeviceList, skip identity.DeviceID) (int64, error) {
	raw, err := tx.Get(st.lists, list.Account[:])
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return 0, err
	}
	n := int64(len(raw))
	for i := range list.Devices {
		d := list.Devices[i].Device
		dev := deviceKey(list.Account, d)
		rec, err := tx.Get(st.records, dev)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return 0, err
		}
		n += int64(len(rec))
		if d == skip {
			continue
		}
		hv, err := tx.Get(st.heads, dev)
		if errors.Is(err, storage.ErrNotFound) {
			continue // no head, no prekeys served (a leftover is swept)
		}
		if err != nil {
			return 0, err
		}
		n += int64(len(hv))
		cur, err := st.getCursor(tx, dev)
		if err != nil {
			return 0, err
		}
		c, err := st.counts(tx, dev, cur)
		if err != nil {
			return 0, err
		}
		n += int64(c[0])*prekeySize(kinds[0]) + int64(c[1])*prekeySize(kinds[1])
	}
	return n, nil
}

// counts returns how many one-time prekeys of each kind dev holds,
// walking from its cursor (every stored prekey is at or above it).
func (st *store) counts(tx *storage.Txn, dev []byte, cur [2]uint32) ([2]int, error) {
	var c [2]int
	for i, kind := range kinds {
		err := tx.IterateFrom(st.prekeys, append(slices.Clip(dev), kind), appendU32(nil, cur[i]), func(_, _ []byte) error {
			c[i]++
			return nil
		})
		if err != nil {
			return c, err
		}
	}
	return c, nil
}

// notOlder refuses a signed prekey that rolls back the stored one. Bundles
// are public, so anyone can publish an old one again; pqxdh IDs increase
// with every rotation.
func notOlder(what string, next, cur pqxdh.SignedKey) error {
	switch {
	case next.ID < cur.ID:
		return fmt.Errorf("%w: %s %d is older than the stored %d", ErrRollback, what, next.ID, cur.ID)
	case next.ID == cur.ID && !bytes.Equal(next.Pub, cur.Pub):
		return fmt.Errorf("%w: %s ID %d reused for another key", ErrRollback, what, next.ID)
	}
	return nil
}

// putRecord stores rec unless the stored record is newer. An equal Issued
// time is accepted only for the identical record.
func (st *store) putRecord(tx *storage.Txn, acct identity.AccountID, rec *Record, raw []byte) error {
	k := deviceKey(acct, rec.Device)
	cur, err := tx.Get(st.records, k)
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return err
	default:
		old, err := ParseRecord(cur)
		if err != nil {
			return fmt.Errorf("%w: stored record: %v", ErrInternal, err)
		}
		if rec.Issued < old.Issued {
			return fmt.Errorf("%w: record issued at %d, stored one at %d", ErrRollback, rec.Issued, old.Issued)
		}
		if rec.Issued == old.Issued && !bytes.Equal(cur, raw) {
			return fmt.Errorf("%w: a different record issued at %d is stored", ErrRollback, rec.Issued)
		}
	}
	return tx.Set(st.records, k, raw)
}

// getList returns the stored list of a, or an error wrapping ErrNotFound.
func (st *store) getList(tx *storage.Txn, a identity.AccountID) (*identity.DeviceList, error) {
	raw, err := tx.Get(st.lists, a[:])
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, a)
	}
	if err != nil {
		return nil, err
	}
	l, err := identity.ParseDeviceList(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: stored list: %v", ErrInternal, err)
	}
	return l, nil
}

// fetchOutcome counts what a fetch handed out, for metrics.
type fetchOutcome struct {
	bundles int
	taken   [2]int // one-time prekeys handed out, by position in kinds
	empty   [2]int // bundles handed out without a one-time prekey of the kind, none being stored
}

// fetch builds the answer for account a and deletes the one-time prekeys
// it hands out in the same transaction, so each is handed out once, even
// across restarts: a key is either in the answer of a committed
// transaction or still stored. A device's one-time prekeys are handed out
// only if allow(device) says so (the rate limits; it is called only for
// devices that have some, and may be called again when the transaction
// is retried).
func (st *store) fetch(a identity.AccountID, allow func(identity.DeviceID) bool) (*entriesMsg, fetchOutcome, error) {
	var msg *entriesMsg
	var out fetchOutcome
	err := st.db.Update(func(tx *storage.Txn) error {
		out = fetchOutcome{}
		raw, err := tx.Get(st.lists, a[:])
		if errors.Is(err, storage.ErrNotFound) {
			return fmt.Errorf("%w: %s", ErrNotFound, a)
		}
		if err != nil {
			return err
		}
		l, err := identity.ParseDeviceList(raw)
		if err != nil {
			return fmt.Errorf("%w: stored list: %v", ErrInternal, err)
		}
		msg = &entriesMsg{List: raw}
		for i := range l.Devices {
			e, err := st.fetchDevice(tx, a, l.Devices[i].Device, allow, &out)
			if err != nil {
				return err
			}
			if e.Bundle != nil || e.Record != nil {
				msg.Entries = append(msg.Entries, e)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fetchOutcome{}, err
	}
	return msg, out, nil
}

func (st *store) fetchDevice(tx *storage.Txn, a identity.AccountID, d identity.DeviceID, allow func(identity.DeviceID) bool, out *fetchOutcome) (entry, error) {
	e := entry{Device: d}
	dev := deviceKey(a, d)
	h, err := st.getHead(tx, dev)
	if err != nil {
		return e, err
	}
	if h != nil {
		cur, err := st.getCursor(tx, dev)
		if err != nil {
			return e, err
		}
		next := cur
		b := h.bundle
		for i, kind := range kinds {
			k, key, ok, err := st.lowest(tx, dev, kind, cur[i])
			if err != nil {
				return e, err
			}
			if !ok {
				out.empty[i]++
				continue
			}
			if !allow(d) {
				continue // withheld: the bundle goes out with the last-resort keys
			}
			if err := tx.Delete(st.prekeys, key); err != nil {
				return e, err
			}
			out.taken[i]++
			next[i] = max(k.ID, k.ID+1) // no wrap at the largest ID
			if kind == pqxdh.KindX25519 {
				b.OneTime = []pqxdh.SignedKey{k}
			} else {
				b.OneTimePQ = []pqxdh.SignedKey{k}
			}
		}
		if next != cur {
			v := appendU32(appendU32(make([]byte, 0, 8), next[0]), next[1])
			if err := tx.Set(st.cursors, dev, v); err != nil {
				return e, err
			}
		}
		if e.Bundle, err = b.MarshalBinary(); err != nil {
			return e, fmt.Errorf("%w: stored bundle: %v", ErrInternal, err)
		}
		out.bundles++
	}
	rec, err := tx.Get(st.records, dev)
	switch {
	case errors.Is(err, storage.ErrNotFound):
	case err != nil:
		return e, err
	default:
		e.Record = rec
	}
	return e, nil
}

// stock returns how many one-time prekeys of each kind the relay holds
// for device d, if from is the peer its record names (ErrForbidden if
// not; ErrNotFound if no account lists d with a bundle or record). A
// device listed by several accounts (any account may certify any device
// key) answers for the first account, in byte order, whose record of it
// names from.
func (st *store) stock(d identity.DeviceID, from peer.ID) (x25519, mlkem int, err error) {
	info, err := st.stockInfo(d, from)
	return info.X25519, info.MLKEM, err
}

// stockInfo is stock with the hand-out cursor.
func (st *store) stockInfo(d identity.DeviceID, from peer.ID) (info StockInfo, err error) {
	err = st.db.View(func(tx *storage.Txn) error {
		found := false
		var accounts []identity.AccountID
		err := tx.Iterate(st.owners, d[:], func(k, _ []byte) error {
			var a identity.AccountID
			copy(a[:], k[len(d):])
			accounts = append(accounts, a)
			return nil
		})
		if err != nil {
			return err
		}
		for _, a := range accounts {
			dev := deviceKey(a, d)
			raw, err := tx.Get(st.records, dev)
			if errors.Is(err, storage.ErrNotFound) {
				found = true
				continue
			}
			if err != nil {
				return err
			}
			found = true
			rec, err := ParseRecord(raw)
			if err != nil {
				return fmt.Errorf("%w: stored record: %v", ErrInternal, err)
			}
			if rec.PeerID != from {
				continue
			}
			cur, err := st.getCursor(tx, dev)
			if err != nil {
				return err
			}
			c, err := st.counts(tx, dev, cur)
			if err != nil {
				return err
			}
			info = StockInfo{X25519: c[0], MLKEM: c[1], NextX25519: cur[0], NextMLKEM: cur[1]}
			return nil
		}
		if found {
			return fmt.Errorf("%w: no record of %s names this peer", ErrForbidden, d)
		}
		return fmt.Errorf("%w: no account lists %s with a bundle or record", ErrNotFound, d)
	})
	return info, err
}

// getCursor returns, per kind, the lowest one-time prekey ID that may
// still be stored for dev: one above the last one handed out (all stored
// IDs are above it, see head). Iteration starts there instead of walking
// the deletion markers of every prekey handed out before, which Badger
// keeps until compaction.
func (st *store) getCursor(tx *storage.Txn, dev []byte) ([2]uint32, error) {
	v, err := tx.Get(st.cursors, dev)
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return [2]uint32{}, nil
	case err != nil:
		return [2]uint32{}, err
	case len(v) != 8:
		return [2]uint32{}, fmt.Errorf("%w: stored cursor of %d bytes", ErrInternal, len(v))
	}
	return [2]uint32{binary.BigEndian.Uint32(v), binary.BigEndian.Uint32(v[4:])}, nil
}

// lowest returns the lowest-ID one-time prekey of a kind whose ID is at
// least from, and its key.
func (st *store) lowest(tx *storage.Txn, dev []byte, kind byte, from uint32) (pqxdh.SignedKey, []byte, bool, error) {
	var key, val []byte
	prefix := append(slices.Clip(dev), kind)
	err := tx.IterateFrom(st.prekeys, prefix, appendU32(nil, from), func(k, v []byte) error {
		key, val = bytes.Clone(k), bytes.Clone(v)
		return storage.ErrStop
	})
	if err != nil || key == nil {
		return pqxdh.SignedKey{}, nil, false, err
	}
	pubLen := oneTimeSize - 4 - 64
	if kind == pqxdh.KindMLKEM768 {
		pubLen = oneTimePQSize - 4 - 64
	}
	if len(key) != len(prefix)+4 || len(val) != pubLen+64 {
		return pqxdh.SignedKey{}, nil, false, fmt.Errorf("%w: stored one-time prekey of %d bytes", ErrInternal, len(val))
	}
	k := pqxdh.SignedKey{
		ID:  binary.BigEndian.Uint32(key[len(prefix):]),
		Pub: val[:pubLen:pubLen],
		Sig: val[pubLen:],
	}
	return k, key, true, nil
}

// sweep deletes the one-time prekeys of every device marked gone under
// prefix (an account, or nil for all), a chunk per transaction, and then
// the mark. Callers hold the account's lock, or run before the handler is
// registered.
func (st *store) sweep(prefix []byte) error {
	for {
		var marks [][]byte
		err := st.db.View(func(tx *storage.Txn) error {
			marks = marks[:0]
			return tx.Iterate(st.gone, prefix, func(k, _ []byte) error {
				marks = append(marks, bytes.Clone(k))
				if len(marks) == sweepChunk {
					return storage.ErrStop
				}
				return nil
			})
		})
		if err != nil {
			return fmt.Errorf("sweep: %w", err)
		}
		if len(marks) == 0 {
			return nil
		}
		for _, m := range marks {
			if err := st.dropPrekeys(m); err != nil {
				return fmt.Errorf("sweep: %w", err)
			}
		}
	}
}

func (st *store) dropPrekeys(dev []byte) error {
	for done := false; !done; {
		err := st.db.Update(func(tx *storage.Txn) error {
			var keys [][]byte
			err := tx.Iterate(st.prekeys, dev, func(k, _ []byte) error {
				keys = append(keys, bytes.Clone(k))
				if len(keys) == sweepChunk {
					return storage.ErrStop
				}
				return nil
			})
			if err != nil {
				return err
			}
			for _, k := range keys {
				if err := tx.Delete(st.prekeys, k); err != nil {
					return err
				}
			}
			done = len(keys) < sweepChunk
			if done {
				return tx.Delete(st.gone, dev)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
