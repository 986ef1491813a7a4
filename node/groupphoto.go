package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/media"
	"github.com/peergram/peergram/relay/blobs"
	"github.com/peergram/peergram/storage"
)

// A group's photo is a file like any other (crypto/filecrypt chunks,
// served by the node that set it and uploaded to its relay), and its
// log entry (KindPhoto) carries what a member needs to fetch and open it
// — the manifest with the file key, a read token, where the chunks are —
// sealed with the group's info key as a title is: relays keep and verify
// the log but read neither the photo nor where it is. The entry's Ref is
// the SHA-256 of the manifest, which names the photo everywhere (its
// file record's ID) and binds the sealed reference to the signed entry.
// Every member's node fetches the photo when its state names one it has
// no record of (notePhoto), into DIR/media, and keeps it only if it is a
// JPEG (autoDownload's check).

const (
	// maxPhotoInput bounds the image SetGroupPhoto takes.
	maxPhotoInput = 10 << 20
	// maxAvatarBytes bounds a group photo (prepared: 640 × 640 JPEG, far
	// smaller); a reference to a larger file is ignored.
	maxAvatarBytes = 1 << 20
	// maxPhotoRelays is how many relays a photo reference names.
	maxPhotoRelays = 2
)

// photoRef is the sealed text of a KindPhoto entry (JSON).
type photoRef struct {
	Manifest []byte   `json:"m"`
	Token    []byte   `json:"t"`
	Peer     string   `json:"p,omitempty"`
	Relays   []string `json:"r,omitempty"`
}

// SetGroupPhoto sets a group's photo to the image in data (cropped to a
// square, at most 640 × 640, re-encoded as JPEG without metadata), or
// removes it (data nil). Those who may change the group's info may.
func (n *Node) SetGroupPhoto(ctx context.Context, group string, data []byte) (chat.Group, error) {
	if data == nil {
		return n.changeGroup(group, func(_ *storage.Txn, l *groupstate.Log) ([]groupstate.Change, error) {
			st := l.State()
			if !st.MayChangeInfo(n.keys.account.ID()) {
				return nil, fmt.Errorf("%w: you may not change this group's info", chat.ErrInvalid)
			}
			if st.Photo == ([32]byte{}) {
				return nil, fmt.Errorf("%w: the group has no photo", chat.ErrInvalid)
			}
			return []groupstate.Change{{Kind: groupstate.KindPhoto}}, nil
		})
	}
	if len(data) > maxPhotoInput {
		return chat.Group{}, fmt.Errorf("%w: an image of %d bytes (at most %d)", chat.ErrTooLarge, len(data), maxPhotoInput)
	}
	if n.files == nil {
		return chat.Group{}, fmt.Errorf("%w: the node is not running", chat.ErrUnavailable)
	}
	// The right first: nothing is stored for a change that would fail.
	if err := n.db.View(func(tx *storage.Txn) error {
		l, err := n.findGroup(tx, group)
		if err == nil && !l.State().MayChangeInfo(n.keys.account.ID()) {
			err = fmt.Errorf("%w: you may not change this group's info", chat.ErrInvalid)
		}
		return err
	}); err != nil {
		return chat.Group{}, err
	}
	var jpg bytes.Buffer
	if _, err := media.PrepareAvatar(data, &jpg); err != nil {
		return chat.Group{}, fmt.Errorf("%w: %w", chat.ErrInvalid, err)
	}
	if err := n.ensureSealingKey(ctx, group); err != nil {
		return chat.Group{}, err
	}
	tok, err := blobs.NewToken(n.rand)
	if err != nil {
		return chat.Group{}, err
	}
	self := n.keys.account.ID()
	var added [][32]byte
	m, err := filecrypt.Encrypt(n.rand, bytes.NewReader(jpg.Bytes()), int64(jpg.Len()), func(_ int, h filecrypt.Hash, ct []byte) error {
		if _, err := n.files.store.Add(tok, self, ct); err != nil {
			return err
		}
		added = append(added, h)
		return nil
	})
	drop := func() {
		if err := n.files.store.Drop(self, added...); err != nil {
			n.log.Warn("group photo: dropping the chunks of a photo not set", "err", err)
		}
	}
	if err != nil {
		drop()
		return chat.Group{}, err
	}
	m.Name, m.Mime = "photo.jpg", "image/jpeg"
	raw, err := m.MarshalBinary()
	if err != nil {
		drop()
		return chat.Group{}, err
	}
	sum := sha256.Sum256(raw)
	id := hex.EncodeToString(sum[:])
	dir := filepath.Join(n.cfg.Home, "media")
	path := filepath.Join(dir, id+".jpg")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		drop()
		return chat.Group{}, err
	}
	if err := os.WriteFile(path, jpg.Bytes(), 0o600); err != nil {
		drop()
		return chat.Group{}, err
	}
	ref := photoRef{Manifest: raw, Token: tok[:], Peer: n.host.ID().String(), Relays: n.relayAddrs()}
	ref.Relays = ref.Relays[:min(len(ref.Relays), maxPhotoRelays)]
	g, err := n.changeGroup(group, func(tx *storage.Txn, l *groupstate.Log) ([]groupstate.Change, error) {
		key, err := n.infoEditKey(tx, l)
		if err != nil {
			return nil, err
		}
		var sealed string
		for r := ref; ; r.Relays = r.Relays[:len(r.Relays)-1] {
			text, err := json.Marshal(r)
			if err != nil {
				return nil, err
			}
			if sealed, err = sealInfo(key, string(text)); err != nil {
				return nil, err
			}
			if len(sealed) <= groupstate.MaxText {
				break
			}
			if len(r.Relays) == 0 {
				return nil, fmt.Errorf("a photo reference of %d bytes sealed (at most %d)", len(sealed), groupstate.MaxText)
			}
		}
		gid := l.Group()
		rec := &fileRecord{ID: id, Chat: hex.EncodeToString(gid[:]), Group: true, From: self.String(), Outgoing: true,
			SentAt: n.cfg.Now().UTC(), State: chat.FileUploading, Path: path,
			Ref: fileRef{Manifest: raw, Token: tok[:], Peer: ref.Peer, Relays: ref.Relays, Kind: string(media.KindPhoto)}}
		if err := n.putFile(tx, rec); err != nil {
			return nil, err
		}
		return []groupstate.Change{{Kind: groupstate.KindPhoto, Ref: sum, Text: sealed}}, nil
	})
	if err != nil {
		drop()
		os.Remove(path)
		return chat.Group{}, err
	}
	n.wakeFiles() // (a group's files go to a relay)
	return g, nil
}

// openPhoto opens st's photo reference: nil if the group has none, or
// if this node cannot read it (no key; not bound to the entry's hash;
// not a JPEG of at most maxAvatarBytes).
func (n *Node) openPhoto(tx *storage.Txn, st *groupstate.State) *photoRef {
	if st.Photo == ([32]byte{}) {
		return nil
	}
	keys, err := n.infoKeys(tx, st.Group)
	if err != nil {
		return nil
	}
	text, err := openInfo(keys, st.PhotoRef)
	if err != nil {
		return nil
	}
	ref, err := parsePhotoRef([]byte(text), st.Photo)
	if err != nil {
		return nil
	}
	return ref
}

// parsePhotoRef decodes a photo reference (opened from a KindPhoto
// entry) and checks it: bound to the entry's hash, a file reference
// that decodes (fileRef.check), a JPEG of at most maxAvatarBytes.
func parsePhotoRef(text []byte, hash [32]byte) (*photoRef, error) {
	var ref photoRef
	if err := json.Unmarshal(text, &ref); err != nil {
		return nil, fmt.Errorf("a photo reference: %w", err)
	}
	if sha256.Sum256(ref.Manifest) != hash {
		return nil, errors.New("a photo reference not bound to its entry's hash")
	}
	fr := fileRef{Manifest: ref.Manifest, Token: ref.Token, Peer: ref.Peer, Relays: ref.Relays}
	m, err := fr.check()
	switch {
	case err != nil:
		return nil, fmt.Errorf("a photo reference: %w", err)
	case m.Size > maxAvatarBytes || m.Mime != "image/jpeg":
		return nil, fmt.Errorf("a photo reference to a %s of %d bytes (a JPEG of at most %d)", m.Mime, m.Size, maxAvatarBytes)
	}
	return &ref, nil
}

// photoHeldKey (groups.sk: group || 'h') names the photo record this
// node keeps for a group (its ID).
func photoHeldKey(g groupstate.GroupID) []byte { return append(append([]byte(nil), g[:]...), 'h') }

// notePhoto keeps one photo record per group, st's: it makes the record
// of st's photo if this node has none, so that the file loop fetches it
// (autoDownload), and drops the one of the photo st replaced or removed
// — its file, and on the node that set it its chunks (an outside review
// found every photo ever set kept on every member's disk).
func (n *Node) notePhoto(st *groupstate.State) {
	if n.files == nil {
		return
	}
	gid := hex.EncodeToString(st.Group[:])
	cur := ""
	if st.Photo != ([32]byte{}) {
		cur = hex.EncodeToString(st.Photo[:])
	}
	var old *fileRecord
	made := false
	err := n.db.Update(func(tx *storage.Txn) error {
		old, made = nil, false
		held := ""
		switch v, err := tx.Get(n.st.groupKeys, photoHeldKey(st.Group)); {
		case err == nil:
			held = string(v)
		case !errors.Is(err, storage.ErrNotFound):
			return err
		}
		if held == cur && cur == "" {
			return nil
		}
		if held != "" && held != cur {
			if rec, err := n.getFile(tx, held); err == nil && rec.Chat == gid {
				old = rec
			}
			if err := tx.Delete(n.st.groupKeys, photoHeldKey(st.Group)); err != nil {
				return err
			}
		}
		if cur == "" {
			return nil
		}
		if has, err := tx.Has(n.st.files, fileKey(cur)); err != nil || (has && held == cur) {
			return err // (nothing changed: no write)
		} else if !has {
			ref := n.openPhoto(tx, st)
			if ref == nil {
				return nil
			}
			made = true
			if err := n.putFile(tx, &fileRecord{ID: cur, Chat: gid, Group: true, SentAt: time.UnixMilli(st.Time).UTC(), State: chat.FileAvailable,
				Ref: fileRef{Manifest: ref.Manifest, Token: ref.Token, Peer: ref.Peer, Relays: ref.Relays, Kind: string(media.KindPhoto)}}); err != nil {
				return err
			}
		}
		return tx.Set(n.st.groupKeys, photoHeldKey(st.Group), []byte(cur))
	})
	if err != nil {
		n.log.Warn("group photo: record", "group", gid[:16], "err", err)
		return
	}
	if old != nil {
		n.dropPhoto(old)
	}
	if made {
		n.wakeFiles()
	}
}

// dropPhoto drops a photo's record, its file and, on the node that set
// it, its chunks (the relay's copy expires with its retention).
func (n *Node) dropPhoto(rec *fileRecord) {
	m, err := rec.manifest()
	if err == nil {
		err = n.dropFile(rec, m, true)
	}
	if err != nil {
		n.log.Warn("group photo: dropping a photo replaced", "photo", rec.ID[:16], "err", err)
	}
	if rec.Path != "" {
		os.Remove(rec.Path)
	}
}

// GroupPhoto returns a group's photo (a JPEG): nil if the group has
// none this node can read. A photo not fetched yet is fetched now.
func (n *Node) GroupPhoto(ctx context.Context, group string) ([]byte, error) {
	p, err := n.groupPhotoPath(ctx, group)
	if err != nil || p == "" {
		return nil, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("%w: the group's photo: %w", chat.ErrUnavailable, err)
	}
	if len(b) > maxAvatarBytes {
		return nil, fmt.Errorf("%w: the group's photo is %d bytes", chat.ErrInvalid, len(b))
	}
	return b, nil
}

// groupPhotoPath is where a group's photo is on this device ("" if it
// has none).
func (n *Node) groupPhotoPath(ctx context.Context, group string) (string, error) {
	var st *groupstate.State
	var rec *fileRecord
	if err := n.db.View(func(tx *storage.Txn) error {
		l, err := n.findGroup(tx, group)
		if err != nil {
			return err
		}
		st = l.State()
		if n.openPhoto(tx, st) == nil {
			return nil
		}
		rec, err = n.getFile(tx, hex.EncodeToString(st.Photo[:]))
		if errors.Is(err, chat.ErrInvalid) {
			return nil // (notePhoto makes it)
		}
		return err
	}); err != nil || st.Photo == ([32]byte{}) {
		return "", err
	}
	if rec == nil {
		n.notePhoto(st)
		return "", fmt.Errorf("%w: the group's photo is not fetched yet", chat.ErrUnavailable)
	}
	if rec.Outgoing || rec.State == chat.FileDownloaded {
		if _, err := os.Stat(rec.Path); err == nil {
			return rec.Path, nil
		}
	}
	if rec.Outgoing {
		return "", fmt.Errorf("%w: the photo this device set is gone from %s", chat.ErrUnavailable, rec.Path)
	}
	if rec.Error != "" {
		return "", fmt.Errorf("%w: the group's photo: %s", chat.ErrInvalid, rec.Error)
	}
	dir := filepath.Join(n.cfg.Home, "media")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	f, err := n.Download(ctx, rec.ID, filepath.Join(dir, rec.ID+".jpg"))
	if err != nil {
		return "", err
	}
	if mime, err := detectFile(f.Path); err != nil || mime != "image/jpeg" {
		os.Remove(f.Path)
		return "", fmt.Errorf("%w: the group's photo is not a JPEG", chat.ErrInvalid)
	}
	return f.Path, nil
}

// photoRenew is how often the node that set a group's photo uploads it
// again (Config.GroupPhotoRenew).
func (n *Node) photoRenew() time.Duration {
	if n.cfg.GroupPhotoRenew > 0 {
		return n.cfg.GroupPhotoRenew
	}
	return 7 * 24 * time.Hour
}

// photoDue reports whether r is the current photo of a group that this
// node set, uploaded, and not uploaded again for photoRenew.
func (n *Node) photoDue(tx *storage.Txn, r *fileRecord) bool {
	if !r.Outgoing || !r.Group || r.State != chat.FileUploaded || r.Ref.Kind != string(media.KindPhoto) {
		return false
	}
	last := r.Renewed
	if last.IsZero() {
		last = r.SentAt
	}
	if n.cfg.Now().Sub(last) < n.photoRenew() {
		return false
	}
	raw, err := hex.DecodeString(r.Chat)
	if err != nil || len(raw) != 32 {
		return false
	}
	held, err := tx.Get(n.st.groupKeys, photoHeldKey(groupstate.GroupID(raw)))
	return err == nil && string(held) == r.ID
}

// renewPhoto uploads a group photo's chunks to the relay again: the
// relay keeps a blob 30 days after its last upload, and a member who
// joins later fetches the photo from there (members who have it do not
// serve it).
func (n *Node) renewPhoto(ctx context.Context, r *fileRecord) {
	m, err := r.manifest()
	if err != nil || len(n.relays) == 0 {
		return
	}
	f := n.files
	f.mu.Lock()
	failed := f.tried[r.ID+"/renew"] // (a relay that refuses: once a minute)
	f.mu.Unlock()
	if time.Since(failed) < time.Minute {
		return
	}
	n.mu.Lock()
	cert := n.keys.cert
	n.mu.Unlock()
	c := blobs.NewClient(n.host)
	pctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = c.PutMany(pctx, n.relays[0].ID, n.keys.device, cert, r.token(), len(m.Chunks), func(i int) ([]byte, error) {
		return n.files.store.Read(m.Chunks[i])
	}, func(_ int, err error) error { return err })
	if err != nil {
		n.log.Info("group photo: renewing at the relay", "photo", r.ID[:16], "err", err)
		f.mu.Lock()
		f.tried[r.ID+"/renew"] = time.Now()
		f.mu.Unlock()
		return
	}
	_, _ = n.updateFile(r.ID, func(rec *fileRecord) error { rec.Renewed = n.cfg.Now(); return nil })
}
