package node

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/relay/mailbox"
	"github.com/peergram/peergram/storage"
)

// Delivery tokens let a device's relays tell its contacts' deposits from
// strangers': the device registers its token with every home relay when it
// subscribes (the relay keeps a hash) and hands it to its contacts inside
// every payload it sends them (payload.DT); a deposit that carries it may
// fill the whole mailbox, one without shares a small part of it, so a
// stranger who floods a mailbox cannot push out contacts' messages (as
// Signal's sealed-sender access keys). Removing a contact changes the
// token; the remaining contacts learn the new one with the next message.

var tokenKey = []byte("delivery-token")

// loadToken reads the device's delivery token, making one the first time.
func (n *Node) loadToken() error {
	return n.db.Update(func(tx *storage.Txn) error {
		raw, err := tx.Get(n.st.meta, tokenKey)
		if err == nil && len(raw) == len(mailbox.Token{}) {
			copy(n.token[:], raw)
			return nil
		}
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		return n.newTokenTx(tx)
	})
}

func (n *Node) newTokenTx(tx *storage.Txn) error {
	var tok mailbox.Token
	if _, err := n.rand.Read(tok[:]); err != nil {
		return err
	}
	if err := tx.Set(n.st.meta, tokenKey, tok[:]); err != nil {
		return err
	}
	n.tokMu.Lock()
	n.token = tok
	n.tokMu.Unlock()
	return nil
}

// currentToken returns the device's delivery token and a channel closed
// when it changes (subscriptions then register the new one).
func (n *Node) currentToken() (mailbox.Token, <-chan struct{}) {
	n.tokMu.Lock()
	defer n.tokMu.Unlock()
	if n.tokenChanged == nil {
		n.tokenChanged = make(chan struct{})
	}
	return n.token, n.tokenChanged
}

// rotateToken replaces the delivery token inside tx; call tokenRotated
// after the commit.
func (n *Node) rotateToken(tx *storage.Txn) error { return n.newTokenTx(tx) }

// tokenRotated wakes the subscriptions so they register the new token.
func (n *Node) tokenRotated() {
	n.tokMu.Lock()
	if n.tokenChanged != nil {
		close(n.tokenChanged)
	}
	n.tokenChanged = make(chan struct{})
	n.tokMu.Unlock()
}

// tokenHex is the token to put in a payload.
func (n *Node) tokenHex() string {
	tok, _ := n.currentToken()
	return hex.EncodeToString(tok[:])
}

// peerToken returns the delivery token target t sent us, or the zero
// Token (a stranger's deposit) if none.
func (n *Node) peerToken(t target) mailbox.Token {
	var tok mailbox.Token
	if t.account == n.keys.account.ID() {
		return tok
	}
	_ = n.db.View(func(tx *storage.Txn) error {
		c, err := n.st.getContact(tx, t.account)
		if err != nil {
			return nil
		}
		if raw, err := hex.DecodeString(c.Devices[t.cert.Device.String()].Token); err == nil && len(raw) == len(tok) {
			copy(tok[:], raw)
		}
		return nil
	})
	return tok
}

// storePeerToken records the delivery token device dev of c's account
// sent, inside tx.
func storePeerToken(c *contactRecord, dev identity.DeviceID, token string) (changed bool, err error) {
	if token == "" {
		return false, nil
	}
	raw, err := hex.DecodeString(token)
	if err != nil || len(raw) != len(mailbox.Token{}) {
		return false, fmt.Errorf("%w: delivery token %q", chat.ErrInvalid, token)
	}
	if c.Devices == nil {
		c.Devices = map[string]deviceInfo{}
	}
	d := c.Devices[dev.String()]
	if d.Token == token {
		return false, nil
	}
	d.Token = token
	c.Devices[dev.String()] = d
	return true, nil
}
