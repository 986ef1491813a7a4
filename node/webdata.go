package node

import (
	"context"
	"errors"
	"fmt"

	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/storage"
)

// The web client's data that lives in the daemon rather than in one
// browser: its login sessions (so a restart of the daemon does not log
// every browser out) and its preferences (pinned and archived chats, the
// same in every browser of this daemon). The local API encodes them;
// the node keeps the bytes, in the store (encrypted with it).

// maxWebData bounds one entry.
const maxWebData = 64 << 10

// webDataNames are the entries the web client may keep.
var webDataNames = map[string]bool{"sessions": true, "prefs": true}

func webDataKey(name string) ([]byte, error) {
	if !webDataNames[name] {
		return nil, fmt.Errorf("%w: no web data %q", chat.ErrInvalid, name)
	}
	return []byte("web/" + name), nil
}

// WebData returns the web client's entry name (nil if none is kept).
func (n *Node) WebData(_ context.Context, name string) ([]byte, error) {
	key, err := webDataKey(name)
	if err != nil {
		return nil, err
	}
	var out []byte
	err = n.db.View(func(tx *storage.Txn) error {
		v, err := tx.Get(n.st.meta, key)
		if errors.Is(err, storage.ErrNotFound) {
			return nil
		}
		out = v
		return err
	})
	return out, err
}

// KeepWebData stores the web client's entry name.
func (n *Node) KeepWebData(_ context.Context, name string, data []byte) error {
	key, err := webDataKey(name)
	if err != nil {
		return err
	}
	if len(data) > maxWebData {
		return fmt.Errorf("%w: %d bytes of web data (at most %d)", chat.ErrTooLarge, len(data), maxWebData)
	}
	if err := n.db.Update(func(tx *storage.Txn) error { return tx.Set(n.st.meta, key, data) }); err != nil {
		return err
	}
	if name == "prefs" {
		n.events.publish(chat.Event{Type: chat.EventPrefs})
	}
	return nil
}
