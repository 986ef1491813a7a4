package directory

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/storage"
)

// expireScan bounds the touched keys one read transaction of an expiry
// pass walks.
const expireScan = 4096

// expire deletes every account whose last publish was before the unix
// time before, with its devices' entries, and every listed device whose
// bundle or record was last published before it. Each is deleted under
// its account's publish lock after checking the time again, so a publish
// racing the pass wins.
func (st *store) expire(before int64) (Expired, error) {
	var e Expired
	var from []byte
	for {
		var stale [][]byte
		n := 0
		err := st.db.View(func(tx *storage.Txn) error {
			stale, n = stale[:0], 0
			return tx.IterateFrom(st.touched, nil, from, func(k, v []byte) error {
				n++
				from = append(bytes.Clone(k), 0) // the next pass resumes after k
				if t, ok := touchTime(v); ok && t < before {
					stale = append(stale, bytes.Clone(k))
				}
				if n == expireScan {
					return storage.ErrStop
				}
				return nil
			})
		})
		if err != nil {
			return e, err
		}
		for _, k := range stale {
			var a identity.AccountID
			copy(a[:], k)
			if len(k) == len(a) {
				ok, err := st.expireAccount(a, before)
				if err != nil {
					return e, err
				}
				if ok {
					e.Accounts++
				}
				continue
			}
			var d identity.DeviceID
			copy(d[:], k[len(a):])
			ok, err := st.expireDevice(a, d, before)
			if err != nil {
				return e, err
			}
			if ok {
				e.Devices++
			}
		}
		if n < expireScan {
			return e, nil
		}
	}
}

// touchTime decodes a touched value: unix seconds.
func touchTime(v []byte) (int64, bool) {
	if len(v) != 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(v)), true
}

// stale reports whether the touched key k was last published before
// before (false if it is gone).
func (st *store) stale(tx *storage.Txn, k []byte, before int64) (bool, error) {
	v, err := tx.Get(st.touched, k)
	if errors.Is(err, storage.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	t, ok := touchTime(v)
	if !ok {
		return false, fmt.Errorf("%w: stored publish time of %d bytes", ErrInternal, len(v))
	}
	return t < before, nil
}

// expireAccount deletes account a, its list and every entry of its
// devices, if it is still stale.
func (st *store) expireAccount(a identity.AccountID, before int64) (bool, error) {
	unlock := st.lock(a)
	defer unlock()
	expired := false
	err := st.db.Update(func(tx *storage.Txn) error {
		expired = false
		if ok, err := st.stale(tx, a[:], before); !ok || err != nil {
			return err
		}
		expired = true
		l, err := st.getList(tx, a)
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return err
		default:
			for i := range l.Devices {
				if err := st.dropDevice(tx, a, l.Devices[i].Device); err != nil {
					return err
				}
			}
		}
		// Devices no longer listed left no touched key (dropDevice
		// deletes it), but be thorough: nothing of a is kept.
		var rest [][]byte
		err = tx.Iterate(st.touched, a[:], func(k, _ []byte) error {
			rest = append(rest, bytes.Clone(k))
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range rest {
			if err := tx.Delete(st.touched, k); err != nil {
				return err
			}
		}
		var versions [][]byte
		if err := tx.Iterate(st.history, a[:], func(k, _ []byte) error {
			versions = append(versions, bytes.Clone(k))
			return nil
		}); err != nil {
			return err
		}
		for _, k := range versions {
			if err := tx.Delete(st.history, k); err != nil {
				return err
			}
		}
		return tx.Delete(st.lists, a[:])
	})
	if err != nil || !expired {
		return false, err
	}
	return true, st.sweep(a[:])
}

// expireDevice deletes the bundle, record and one-time prekeys of device
// d of account a, if they are still stale.
func (st *store) expireDevice(a identity.AccountID, d identity.DeviceID, before int64) (bool, error) {
	unlock := st.lock(a)
	defer unlock()
	k := deviceKey(a, d)
	expired := false
	err := st.db.Update(func(tx *storage.Txn) error {
		expired = false
		if ok, err := st.stale(tx, k, before); !ok || err != nil {
			return err
		}
		expired = true
		return st.dropDevice(tx, a, d)
	})
	if err != nil || !expired {
		return false, err
	}
	return true, st.sweep(k)
}

// migrate brings a store written before schema 2 up to date: every
// account gets a publish time of now (so nothing expires before it had
// Expiry to be published again), and every listed device with a bundle
// or record gets one too, and its owner index entry. It runs once.
func (st *store) migrate(now int64) error {
	var v []byte
	err := st.db.View(func(tx *storage.Txn) error {
		var err error
		v, err = tx.Get(st.meta, schemaKey)
		return err
	})
	switch {
	case err == nil && len(v) == 1 && v[0] >= schema:
		return nil
	case err != nil && !errors.Is(err, storage.ErrNotFound):
		return fmt.Errorf("migrate: %w", err)
	}
	var from []byte
	for {
		var accounts []identity.AccountID
		err := st.db.View(func(tx *storage.Txn) error {
			accounts = accounts[:0]
			return tx.IterateFrom(st.lists, nil, from, func(k, _ []byte) error {
				var a identity.AccountID
				copy(a[:], k)
				accounts = append(accounts, a)
				from = append(bytes.Clone(k), 0)
				if len(accounts) == sweepChunk {
					return storage.ErrStop
				}
				return nil
			})
		})
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		for _, a := range accounts {
			if err := st.migrateAccount(a, now); err != nil {
				return fmt.Errorf("migrate %s: %w", a, err)
			}
		}
		if len(accounts) < sweepChunk {
			break
		}
	}
	return st.db.Update(func(tx *storage.Txn) error { return tx.Set(st.meta, schemaKey, []byte{schema}) })
}

func (st *store) migrateAccount(a identity.AccountID, now int64) error {
	unlock := st.lock(a)
	defer unlock()
	return st.db.Update(func(tx *storage.Txn) error {
		if ok, err := tx.Has(st.touched, a[:]); err != nil || ok {
			return err
		}
		if err := tx.Set(st.touched, a[:], appendU64(nil, uint64(now))); err != nil {
			return err
		}
		l, err := st.getList(tx, a)
		if err != nil {
			return err
		}
		for i := range l.Devices {
			d := l.Devices[i].Device
			k := deviceKey(a, d)
			head, err := tx.Has(st.heads, k)
			if err != nil {
				return err
			}
			rec, err := tx.Has(st.records, k)
			if err != nil {
				return err
			}
			if head || rec {
				if err := st.touchDevice(tx, a, d, now); err != nil {
					return err
				}
			}
		}
		return nil
	})
}
