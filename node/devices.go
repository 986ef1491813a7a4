package node

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/directory"
	"github.com/peergram/peergram/storage"
)

// Device lists decide who may speak for an account. A node accepts a
// device — as the origin of an envelope, or as a destination to seal for —
// only if its certificate, DH key included, is on the account's current,
// fresh list: the newest list a directory showed, checked against every
// list seen before (no rollback, no fork), and re-confirmed with a
// directory when it is older than listRecheck or when a device it does not
// name appears. Sessions of devices that leave the list are dropped.

// listRecheck is how long a confirmed list is used before the node asks a
// directory again (when it next seals for, or hears from, that account).
const listRecheck = 24 * time.Hour

// errUnlisted marks an envelope from a device that is not on its account's
// current list: permanent.
var errUnlisted = fmt.Errorf("%w: sender device is not on its account's device list", errPermanent)

// checkListed makes sure device p with DH key dh is on the current list of
// p.account, asking the directories when the list the node holds does not
// show it or has expired. It fails with errUnlisted when a directory
// confirms it is not listed, and with chat.ErrUnavailable when no directory
// can be asked (try again later).
func (n *Node) checkListed(ctx context.Context, p peerKey, dh [32]byte) error {
	now := n.cfg.Now()
	list, checked, err := n.knownList(p.account)
	if err != nil {
		return err
	}
	if list != nil && list.CheckFresh(now.Unix()) == nil && now.Sub(checked) < listRecheck {
		if c, err := list.Lookup(p.device); err == nil && c.DH == dh {
			return nil
		}
	}
	if p.account == n.keys.account.ID() {
		list, err = n.refreshOwnList(ctx)
	} else {
		var c *contactRecord
		if c, err = n.refreshContact(ctx, p.account); err == nil {
			list, err = c.deviceList()
		}
	}
	if err != nil {
		if errors.Is(err, directory.ErrNotFound) {
			return fmt.Errorf("%w: %s has published no device list", errUnlisted, p.account)
		}
		return err
	}
	if err := list.CheckFresh(now.Unix()); err != nil {
		return fmt.Errorf("%w: %w", chat.ErrUnavailable, err)
	}
	if c, err := list.Lookup(p.device); err != nil || c.DH != dh {
		return fmt.Errorf("%w: %s/%s", errUnlisted, p.account, p.device)
	}
	return nil
}

// knownList returns the list the node holds for account a (its own for its
// own account) and when a directory last confirmed it.
func (n *Node) knownList(a identity.AccountID) (*identity.DeviceList, time.Time, error) {
	if a == n.keys.account.ID() {
		n.mu.Lock()
		defer n.mu.Unlock()
		return n.keys.list, n.keys.listChecked, nil
	}
	var c *contactRecord
	err := n.db.View(func(tx *storage.Txn) (err error) {
		c, err = n.st.getContact(tx, a)
		return err
	})
	if errors.Is(err, chat.ErrUnknownContact) {
		return nil, time.Time{}, nil
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	l, err := c.deviceList()
	return l, c.ListChecked, err
}

// fetchList asks the home relays' directories for account a's entries,
// checked against known (nil if none). It returns the first answer.
func (n *Node) fetchList(ctx context.Context, a identity.AccountID, known *identity.DeviceList) (*directory.Result, error) {
	if len(n.relays) == 0 {
		return nil, fmt.Errorf("%w: no relay configured to look up %s", chat.ErrUnavailable, a)
	}
	var errs []error
	notFound := 0
	for _, r := range n.relays {
		fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		n.host.Peerstore().AddAddrs(r.ID, r.Addrs, time.Hour)
		res, err := n.dir.FetchSince(fctx, r.ID, a, known)
		cancel()
		if err == nil {
			return res, nil
		}
		if errors.Is(err, directory.ErrNotFound) {
			notFound++
		}
		errs = append(errs, fmt.Errorf("relay %s: %w", r.ID, err))
	}
	if notFound == len(n.relays) {
		return nil, fmt.Errorf("keys of %s: %w", a, directory.ErrNotFound)
	}
	return nil, fmt.Errorf("%w: keys of %s: %w", chat.ErrUnavailable, a, errors.Join(errs...))
}

// refreshContact fetches an account's device list, records and a bundle
// per device from the home relays' directories and stores them. A list
// that rolls back or forks the one already known is refused. Sessions of
// devices that are no longer listed, or whose key changed, are dropped. An
// account never seen before gets a record that is not a contact.
func (n *Node) refreshContact(ctx context.Context, a identity.AccountID) (*contactRecord, error) {
	known, _, err := n.knownList(a)
	if err != nil {
		return nil, err
	}
	res, err := n.fetchList(ctx, a, known)
	if isGap(err) {
		res, err = n.fetchChain(ctx, a, known)
	}
	if err != nil {
		return nil, err
	}
	if err := res.List.CheckFresh(n.cfg.Now().Unix()); err != nil {
		return nil, fmt.Errorf("%w: %w", chat.ErrUnavailable, err)
	}
	var c *contactRecord
	err = n.db.Update(func(tx *storage.Txn) error {
		var err error
		c, err = n.st.getContact(tx, a)
		if errors.Is(err, chat.ErrUnknownContact) {
			// Known, not a contact, no chat yet: a message that is stored
			// makes it a request (apply), a forged envelope that only made
			// the node look the account up leaves no trace for the user.
			c = &contactRecord{Account: a, Added: n.cfg.Now().UTC(), State: stateNone}
		} else if err != nil {
			return err
		}
		if old, _ := c.deviceList(); old != nil {
			// The same checks again, inside the transaction: another
			// refresh may have stored a newer list meanwhile.
			if err := res.List.CheckUpdate(old); err != nil && !errors.Is(err, identity.ErrGap) {
				return fmt.Errorf("node: device list of %s: %w", a, err)
			}
			if old.Version > res.List.Version {
				return fmt.Errorf("node: device list of %s: %w", a, identity.ErrRollback)
			}
		}
		if c.List, err = res.List.MarshalBinary(); err != nil {
			return err
		}
		c.ListChecked = n.cfg.Now()
		devs := map[string]deviceInfo{}
		for _, d := range res.Devices {
			// What the device told us itself (its delivery token) stays.
			info := deviceInfo{Token: c.Devices[d.Cert.Device.String()].Token}
			if d.Record != nil {
				info.Record, _ = d.Record.MarshalBinary()
			}
			if d.Bundle != nil {
				info.Bundle, _ = d.Bundle.MarshalBinary()
			}
			devs[d.Cert.Device.String()] = info
		}
		c.Devices = devs
		if err := n.dropUnlisted(tx, a, res.List); err != nil {
			return err
		}
		return n.st.putContact(tx, c)
	})
	return c, err
}

// fetchChain obtains the lists between known and the directory's newest,
// so a contact offline for several list versions is still checked link by
// link (no version skipped, so no fork hidden).
func (n *Node) fetchChain(ctx context.Context, a identity.AccountID, known *identity.DeviceList) (*directory.Result, error) {
	res, err := n.fetchList(ctx, a, nil)
	if err != nil {
		return nil, err
	}
	chain, err := n.fetchHistory(ctx, a, known.Version+1, res.List.Version)
	if err != nil {
		return nil, err
	}
	last, err := identity.CheckChain(known, append(chain, res.List))
	if err != nil {
		return nil, err
	}
	res.List = last
	return res, nil
}

func isGap(err error) bool {
	return errors.Is(err, identity.ErrGap) || errors.Is(err, directory.ErrGap)
}

// dropUnlisted deletes the sessions with devices of a that list does not
// name, or names with another DH key.
func (n *Node) dropUnlisted(tx *storage.Txn, a identity.AccountID, list *identity.DeviceList) error {
	peers, err := n.st.peerSessions(tx, a)
	if err != nil {
		return err
	}
	for _, p := range peers {
		c, err := list.Lookup(p.device)
		if err == nil {
			sess, err := n.st.currentSession(tx, p)
			if err == nil && sess.PeerIdentityKey() == c.DH {
				continue
			}
		}
		n.log.Info("dropping sessions of a device that left its account's list", "account", a.String(), "device", p.device.String())
		if err := n.st.dropSessions(tx, p); err != nil {
			return err
		}
	}
	return nil
}

// refreshOwnList asks the directories for the node's own account: another
// device of the account may have added or removed a device. A newer list
// that chains to ours replaces it (and drops sessions of devices it no
// longer names); the node's own device must still be on it.
func (n *Node) refreshOwnList(ctx context.Context) (*identity.DeviceList, error) {
	self := n.keys.account.ID()
	known, _, _ := n.knownList(self)
	res, err := n.fetchList(ctx, self, known)
	if isGap(err) {
		res, err = n.fetchChain(ctx, self, known)
	}
	if err != nil {
		return nil, err
	}
	if _, err := res.List.Lookup(n.keys.device.ID()); err != nil {
		return nil, fmt.Errorf("node: this device was removed from its account's device list: %w", err)
	}
	raw, err := res.List.MarshalBinary()
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if res.List.Version < n.keys.list.Version {
		return n.keys.list, nil
	}
	if err := n.db.Update(func(tx *storage.Txn) error {
		if err := tx.Set(n.st.meta, []byte("list"), raw); err != nil {
			return err
		}
		return n.dropUnlisted(tx, self, res.List)
	}); err != nil {
		return nil, err
	}
	n.keys.list, n.keys.listChecked = res.List, n.cfg.Now()
	return res.List, nil
}

// migrateOwnCert re-certifies a legacy certificate (one without proof of
// possession) of this device and signs the next list version with it. It
// runs at start, before anything is published.
func (n *Node) migrateOwnCert() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if !n.keys.cert.Legacy() {
		return nil
	}
	cert, err := n.keys.account.CertifyDevice(n.keys.device, n.keys.cert.Name, n.keys.cert.Created)
	if err != nil {
		return err
	}
	devices := make([]identity.DeviceCert, 0, len(n.keys.list.Devices))
	for _, d := range n.keys.list.Devices {
		switch {
		case d.Device == cert.Device:
			devices = append(devices, *cert)
		case d.Legacy():
			n.log.Warn("dropping a legacy device certificate from the list; that device must re-certify", "device", d.Device.String())
		default:
			devices = append(devices, d)
		}
	}
	if err := n.signOwnListLocked(cert, devices, false); err != nil {
		return err
	}
	n.self.Cert = cert
	n.log.Info("device re-certified with a proof of possession", "list_version", n.keys.list.Version)
	return nil
}

// signOwnListLocked signs the successor of the held list with devices,
// and stores it (with cert as this device's certificate). The new list is
// issued now, or — unless fixClock — at the held list's time if that is
// later. n.mu is held.
func (n *Node) signOwnListLocked(cert *identity.DeviceCert, devices []identity.DeviceCert, fixClock bool) error {
	issued := n.cfg.Now().Unix()
	if !fixClock {
		issued = max(issued, n.keys.list.Issued)
	}
	next, err := n.keys.account.SignDeviceList(n.keys.list, devices, issued)
	if err != nil {
		return err
	}
	certRaw, err := cert.MarshalBinary()
	if err != nil {
		return err
	}
	listRaw, err := next.MarshalBinary()
	if err != nil {
		return err
	}
	if err := n.db.Update(func(tx *storage.Txn) error {
		if err := tx.Set(n.st.meta, []byte("cert"), certRaw); err != nil {
			return err
		}
		return tx.Set(n.st.meta, []byte("list"), listRaw)
	}); err != nil {
		return err
	}
	n.keys.cert, n.keys.list = cert, next
	return nil
}

// maintainOwnList re-signs the account's list (same devices, next
// version) when it is older than identity.ListRefresh, so it never expires
// while a device of the account runs. It first asks the directories for
// the account's newest list: re-signing an older one than another device
// published would fork the account's history. Only one device re-signs on
// schedule — the one with the oldest certificate — unless the list is
// twice as old (that device seems gone); two devices re-signing the same
// version at once would fork. It reports whether the list changed (and
// must be published).
func (n *Node) maintainOwnList(ctx context.Context) (bool, error) {
	now := n.cfg.Now().Unix()
	n.mu.Lock()
	list := n.keys.list
	n.mu.Unlock()
	// Issued in the future (the clock ran ahead when it was signed):
	// contacts refuse it, so sign again at once, with the right time.
	future := list.Issued > now+identity.MaxListSkew
	if now-list.Issued < identity.ListRefresh && !future {
		return false, nil
	}
	if len(n.relays) > 0 {
		var err error
		if list, err = n.refreshOwnList(ctx); err != nil {
			return false, fmt.Errorf("node: check the account's list before re-signing it: %w", err)
		}
		future = list.Issued > now+identity.MaxListSkew
		if now-list.Issued < identity.ListRefresh && !future {
			return false, nil // another device re-signed it
		}
	}
	designated := list.Devices[0]
	for _, d := range list.Devices[1:] {
		if d.Created < designated.Created || (d.Created == designated.Created && bytes.Compare(d.Device[:], designated.Device[:]) < 0) {
			designated = d
		}
	}
	if designated.Device != n.keys.device.ID() && now-list.Issued < 2*identity.ListRefresh && !future {
		return false, nil
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.keys.list.Version != list.Version {
		return false, nil // changed meanwhile: the next round looks again
	}
	if err := n.signOwnListLocked(n.keys.cert, slices.Clone(list.Devices), future); err != nil {
		return false, err
	}
	n.log.Info("device list re-signed", "version", n.keys.list.Version)
	return true, nil
}

// fetchHistory returns account a's lists with versions from..to
// (inclusive), oldest first, from the first home relay's directory that
// has them all.
func (n *Node) fetchHistory(ctx context.Context, a identity.AccountID, from, to uint64) ([]*identity.DeviceList, error) {
	var errs []error
	for _, r := range n.relays {
		fctx, cancel := context.WithTimeout(ctx, fetchTimeout)
		lists, err := n.dir.History(fctx, r.ID, a, from, to)
		cancel()
		if err == nil {
			return lists, nil
		}
		errs = append(errs, fmt.Errorf("relay %s: %w", r.ID, err))
	}
	return nil, fmt.Errorf("node: lists %d..%d of %s: %w", from, to, a, errors.Join(errs...))
}
