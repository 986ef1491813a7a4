package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/multiformats/go-multiaddr"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/crypto/groupstate"
	"github.com/peergram/peergram/crypto/identity"
	"github.com/peergram/peergram/node/chat"
	"github.com/peergram/peergram/node/media"
	"github.com/peergram/peergram/relay/blobs"
	"github.com/peergram/peergram/storage"
)

// Files: a file is encrypted into content-addressed chunks
// (crypto/filecrypt) as it is sent — the chunks go into the node's own
// blob store (relay/blobs in read-only mode, served on FileProtocolID) in
// the same pass, so the source may change or vanish afterwards — and its
// manifest, a read token and where to fetch it travel in the end-to-end
// message. The recipient fetches the chunks from the sender's node while
// it is online, or from the relay the sender uploaded them to: the sender
// uploads a file that the recipient has not fetched within
// Config.FileUploadAfter. Every chunk is checked against its name (in
// the message the sender signed) before it is decrypted; a download writes chunk by chunk into DEST.part and resumes from the last
// chunk it recorded as written.

// FileProtocolID is the protocol on which a node serves the chunks of the
// files it sent (the blob protocol, read-only).
const FileProtocolID = "/peergram/file/1.0.0"

// fileRef is a file message's file, inside the end-to-end payload.
type fileRef struct {
	Manifest []byte   `json:"m"`           // filecrypt manifest
	Token    []byte   `json:"t"`           // blobs.Token
	Peer     string   `json:"p,omitempty"` // the sending device's peer ID
	Relays   []string `json:"r,omitempty"` // relays that hold (or will hold) the chunks, as /p2p/ multiaddrs
	// Media: the kind (media.Kind), a thumbnail (JPEG, ≤ maxThumb),
	// pixels and seconds.
	Kind     string  `json:"k,omitempty"`
	Thumb    []byte  `json:"th,omitempty"`
	Width    int     `json:"w,omitempty"`
	Height   int     `json:"h,omitempty"`
	Duration float64 `json:"d,omitempty"`
}

// maxThumb bounds a thumbnail in a message.
const maxThumb = 64 << 10

// info is what a message shows of the file.
func (ref *fileRef) info(m *filecrypt.Manifest) *chat.FileInfo {
	k := ref.Kind
	if k == "" {
		k = string(media.KindFile)
	}
	return &chat.FileInfo{Name: fileName(m.Name), Size: m.Size, Mime: m.Mime, Kind: k, Width: ref.Width, Height: ref.Height,
		Duration: ref.Duration, HasThumb: len(ref.Thumb) > 0}
}

// fileRecord is a file of a chat (files.rec: message ID → JSON).
type fileRecord struct {
	ID       string    `json:"id"`
	Chat     string    `json:"chat"`
	From     string    `json:"from"`
	Outgoing bool      `json:"out"`
	SentAt   time.Time `json:"sent_at"`
	Ref      fileRef   `json:"ref"`
	Group    bool      `json:"group,omitempty"` // Chat is a group's ID
	State    string    `json:"state"`
	Done     int       `json:"done"` // chunks written (download) or uploaded (upload), in order
	Path     string    `json:"path,omitempty"`
	Error    string    `json:"error,omitempty"`
	// Renewed: when a group photo this node set was last uploaded to
	// its relay again (renewPhoto).
	Renewed time.Time `json:"renewed,omitempty"`
}

func (r *fileRecord) manifest() (*filecrypt.Manifest, error) {
	return filecrypt.ParseManifest(r.Ref.Manifest)
}

func (r *fileRecord) token() blobs.Token {
	var t blobs.Token
	copy(t[:], r.Ref.Token)
	return t
}

func (r *fileRecord) view() chat.File {
	f := chat.File{ID: r.ID, Chat: r.Chat, From: r.From, Outgoing: r.Outgoing, SentAt: r.SentAt, State: r.State, Path: r.Path, Error: r.Error}
	if m, err := r.manifest(); err == nil {
		info := r.Ref.info(m)
		f.Name, f.Size, f.Mime = info.Name, m.Size, m.Mime
		f.Kind, f.Width, f.Height, f.Duration, f.Thumb = info.Kind, info.Width, info.Height, info.Duration, r.Ref.Thumb
		f.Done = min(int64(r.Done)*filecrypt.ChunkSize, m.Size)
		if r.State == chat.FileDownloaded || r.State == chat.FileUploaded {
			f.Done = m.Size
		}
	}
	return f
}

// fileEngine is the node's file state.
type fileEngine struct {
	store *blobs.Server // this node's chunks, served to recipients
	wake  chan struct{}

	mu     sync.Mutex
	served map[blobs.Token]*served // direct fetches of our files, by token
	active map[string]bool         // downloads under way, by message ID
	tried  map[string]time.Time    // automatic downloads started, by message ID
}

type served struct {
	chunks map[[32]byte]bool
	at     time.Time
}

func (n *Node) startFiles() error {
	st, err := blobs.NewServer(blobs.Config{
		Host: n.host, DB: n.db, Dir: filepath.Join(n.cfg.Home, "chunks"), ReadOnly: true, Protocol: FileProtocolID,
		Retention: 100 * 365 * 24 * time.Hour, AccountQuota: math.MaxInt64 / 2, Capacity: math.MaxInt64 / 2,
		Logger: n.log.With("component", "files"),
	})
	if err != nil {
		return err
	}
	n.files = &fileEngine{store: st, wake: make(chan struct{}, 1), served: map[blobs.Token]*served{}, active: map[string]bool{}, tried: map[string]time.Time{}}
	st.OnServe(n.fileServed)
	return st.Start()
}

// fileServed notes a chunk served directly.
func (n *Node) fileServed(tok blobs.Token, h [32]byte) {
	f := n.files
	f.mu.Lock()
	s := f.served[tok]
	if s == nil {
		s = &served{chunks: map[[32]byte]bool{}}
		f.served[tok] = s
	}
	s.chunks[h], s.at = true, time.Now()
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func fileKey(id string) []byte { return []byte(id) }

func (n *Node) getFile(tx *storage.Txn, id string) (*fileRecord, error) {
	raw, err := tx.Get(n.st.files, fileKey(id))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("%w: no file with message ID %q", chat.ErrInvalid, id)
	}
	if err != nil {
		return nil, err
	}
	var r fileRecord
	return &r, json.Unmarshal(raw, &r)
}

func (n *Node) putFile(tx *storage.Txn, r *fileRecord) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return tx.Set(n.st.files, fileKey(r.ID), raw)
}

// updateFile changes a stored file record and publishes its new state.
func (n *Node) updateFile(id string, fn func(*fileRecord) error) (*fileRecord, error) {
	var r *fileRecord
	err := n.db.Update(func(tx *storage.Txn) error {
		var err error
		if r, err = n.getFile(tx, id); err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
		return n.putFile(tx, r)
	})
	if err == nil {
		v := r.view()
		n.events.publish(chat.Event{Type: chat.EventFile, File: &v})
	}
	return r, err
}

// SendFile sends the file at req.Path to a contact: it is checked (at
// most 2 GiB), its type detected from its content, encrypted chunk by
// chunk into the node's store, and its message committed to the outbox;
// then the source is no longer needed. Progress goes out as EventFile
// events (state uploading, Done the bytes encrypted) under the message's
// ID, which the caller may choose (req.ID).
func (n *Node) SendFile(ctx context.Context, req chat.FileSend) (chat.Message, error) {
	contact, path, caption := req.Chat, req.Path, req.Caption
	var id chat.MessageID
	if req.ID != "" {
		var err error
		if id, err = chat.ParseMessageID(req.ID); err != nil {
			return chat.Message{}, fmt.Errorf("%w: message ID: %w", chat.ErrInvalid, err)
		}
	} else if _, err := n.rand.Read(id[:]); err != nil {
		return chat.Message{}, err
	}
	if n.files == nil {
		return chat.Message{}, fmt.Errorf("%w: the node is not running", chat.ErrUnavailable)
	}
	f, err := os.Open(path)
	if err != nil {
		return chat.Message{}, fmt.Errorf("%w: %w", chat.ErrInvalid, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return chat.Message{}, fmt.Errorf("%w: %w", chat.ErrInvalid, err)
	}
	if !fi.Mode().IsRegular() {
		return chat.Message{}, fmt.Errorf("%w: %s is not a regular file", chat.ErrInvalid, path)
	}
	if fi.Size() > filecrypt.MaxFileSize {
		return chat.Message{}, fmt.Errorf("%w: %s is %d bytes; files of at most 2 GiB (%d bytes) can be sent", chat.ErrTooLarge, path, fi.Size(), int64(filecrypt.MaxFileSize))
	}
	if len(caption) > maxCaption {
		return chat.Message{}, fmt.Errorf("%w: a caption of %d bytes (at most %d)", chat.ErrTooLarge, len(caption), maxCaption)
	}
	// The chat first: nothing is encrypted for a send that would fail.
	var group *groupstate.State
	if err := n.db.View(func(tx *storage.Txn) error {
		_, err := n.resolve(tx, contact)
		if errors.Is(err, chat.ErrUnknownContact) {
			if l, gerr := n.findGroup(tx, contact); gerr == nil {
				group = l.State()
				return nil
			}
		}
		return err
	}); err != nil {
		return chat.Message{}, err
	}
	if group != nil && !group.MayPost(n.keys.account.ID()) {
		return chat.Message{}, fmt.Errorf("%w: you may not post in this group", chat.ErrInvalid)
	}
	mime, kind, err := media.Detect(f)
	if err != nil {
		return chat.Message{}, fmt.Errorf("%w: %w", chat.ErrInvalid, err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return chat.Message{}, err
	}
	name := fileName(filepath.Base(path))
	ref := &fileRef{Kind: string(kind)}
	src, size := io.Reader(f), fi.Size()
	if kind == media.KindVideo && !req.AsFile {
		v, err := media.ProbeVideo(ctx, path)
		if err != nil {
			n.log.Info("files: a video without thumbnail or duration", "why", err)
		}
		ref.Thumb, ref.Width, ref.Height, ref.Duration = v.Thumb, v.Width, v.Height, v.Duration
	}
	if !req.AsFile {
		prepared, err := n.prepareMedia(f, fi.Size(), kind, ref)
		switch {
		case err != nil:
			n.log.Info("files: sent as it is", "path", path, "why", err)
		case prepared != nil:
			defer os.Remove(prepared.Name())
			defer prepared.Close()
			st, err := prepared.Stat()
			if err != nil {
				return chat.Message{}, err
			}
			src, size, mime = prepared, st.Size(), "image/jpeg"
			name = strings.TrimSuffix(name, filepath.Ext(name)) + ".jpg"
		}
	} else if kind == media.KindVoice || kind == media.KindSticker {
		ref.Kind = string(media.KindAudio)
	}
	if ref.Kind == string(media.KindPhoto) && len(ref.Thumb) == 0 {
		ref.Kind = string(media.KindFile) // a photo this node cannot show (HEIF, --as-file)
	}
	tok, err := blobs.NewToken(n.rand)
	if err != nil {
		return chat.Message{}, err
	}
	self := n.keys.account.ID()
	var added [][32]byte
	drop := func() {
		if err := n.files.store.Drop(self, added...); err != nil {
			n.log.Warn("files: dropping the chunks of a file not sent", "err", err)
		}
	}
	var done int64
	progress := func(done, total int64) {
		n.events.publish(chat.Event{Type: chat.EventFile, File: &chat.File{
			ID: id.String(), Name: name, Size: total, Done: done, Outgoing: true, State: chat.FileUploading, SentAt: n.cfg.Now().UTC(),
		}})
	}
	last := time.Time{}
	m, err := filecrypt.Encrypt(n.rand, src, size, func(i int, h filecrypt.Hash, ct []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := n.files.store.Add(tok, self, ct); err != nil {
			return err
		}
		added = append(added, h)
		done += int64(len(ct) - filecrypt.Overhead)
		if time.Since(last) > 100*time.Millisecond || done == size {
			progress(done, size)
			last = time.Now()
		}
		return nil
	})
	if err != nil {
		drop()
		if errors.Is(err, filecrypt.ErrChanged) {
			return chat.Message{}, fmt.Errorf("%w: %w", chat.ErrInvalid, err)
		}
		return chat.Message{}, err
	}
	m.Name, m.Mime = name, mime
	raw, err := m.MarshalBinary()
	if err != nil {
		drop()
		return chat.Message{}, err
	}
	ref.Manifest, ref.Token, ref.Peer, ref.Relays = raw, tok[:], n.host.ID().String(), n.relayAddrs()
	if group != nil {
		gm, err := n.postGroup(ctx, hex.EncodeToString(group.Group[:]), &groupBody{Text: caption, File: ref}, nil)
		if err != nil {
			drop()
			return chat.Message{}, err
		}
		n.wakeFiles()
		return chat.Message{ID: gm.ID, Chat: gm.Group, From: gm.From, Outgoing: true, Text: caption, SentAt: gm.SentAt,
			Status: chat.StatusSent, File: gm.File, FromName: gm.FromName, FromContact: true}, nil
	}
	msg, err := n.submitSend(ctx, &sendReq{contact: contact, text: caption, id: id, now: n.cfg.Now(), file: ref})
	if err != nil {
		drop()
		return chat.Message{}, err
	}
	n.wakeFiles()
	return msg, nil
}

// maxCaption bounds a file's caption (Telegram's is 1,024 characters).
const maxCaption = 4096

// fileName makes a received or sent name safe to show and to write: no
// directories, no control characters, at most filecrypt.MaxName bytes.
func fileName(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r < 0x20 || r == 0x7f || r == '/' || r == '\\':
			return '_'
		case r == 0x061c || r == 0x200e || r == 0x200f || (r >= 0x202a && r <= 0x202e) || (r >= 0x2066 && r <= 0x2069):
			return -1 // bidirectional controls: they hide an extension (review finding)
		}
		return r
	}, s)
	s = strings.TrimLeft(s, ".")
	for len(s) > filecrypt.MaxName {
		_, size := lastRune(s)
		s = s[:len(s)-size]
	}
	if s == "" {
		s = "file"
	}
	return s
}

func lastRune(s string) (rune, int) {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i]&0xc0 != 0x80 {
			return rune(s[i]), len(s) - i
		}
	}
	return 0, 1
}

// fileSendTx stores an outgoing file's record with its message (in the
// send's transaction).
func (n *Node) fileSendTx(tx *storage.Txn, rec *messageRecord, ref *fileRef) error {
	m, err := filecrypt.ParseManifest(ref.Manifest)
	if err != nil {
		return err
	}
	rec.File = ref.info(m)
	return n.putFile(tx, &fileRecord{ID: rec.ID, Chat: rec.Chat, From: rec.From, Outgoing: true, SentAt: rec.SentAt, Ref: *ref, State: chat.FileUploading})
}

// check decodes a file reference from the network and bounds it.
func (ref *fileRef) check() (*filecrypt.Manifest, error) {
	m, err := filecrypt.ParseManifest(ref.Manifest)
	switch {
	case err != nil:
		return nil, err
	case len(ref.Token) != len(blobs.Token{}):
		return nil, fmt.Errorf("a file token of %d bytes", len(ref.Token))
	case len(ref.Relays) > 8 || len(ref.Peer) > 128:
		return nil, errors.New("a file reference with too many sources")
	case len(ref.Thumb) > maxThumb || len(ref.Kind) > 16 || ref.Width < 0 || ref.Height < 0 || ref.Duration < 0 ||
		ref.Width > 1<<20 || ref.Height > 1<<20 || ref.Duration > 1e7:
		return nil, errors.New("a file reference with bad media fields")
	}
	for _, r := range ref.Relays {
		if len(r) > 512 {
			return nil, errors.New("a file source address over 512 bytes")
		}
	}
	return m, nil
}

// fileGroupTx stores the record of a group message's file (sent or
// received).
func (n *Node) fileGroupTx(tx *storage.Txn, gid groupstate.GroupID, gm *groupMessage, ref *fileRef) error {
	if _, err := ref.check(); err != nil {
		return nil // (setBody dropped it too)
	}
	state := chat.FileAvailable
	if gm.From == n.keys.account.ID() {
		state = chat.FileUploading
	}
	return n.putFile(tx, &fileRecord{ID: gm.ID, Chat: hex.EncodeToString(gid[:]), Group: true, From: gm.From.String(),
		Outgoing: gm.From == n.keys.account.ID(), SentAt: time.UnixMilli(gm.SentAt).UTC(), Ref: *ref, State: state})
}

// fileReceiveTx checks a received message's file and stores its record;
// a file whose manifest does not decode is dropped (the text stays).
func (n *Node) fileReceiveTx(tx *storage.Txn, rec *messageRecord, ref *fileRef) {
	m, err := ref.check()
	if err != nil {
		n.log.Info("files: a file that does not decode", "message", rec.ID, "err", err)
		return
	}
	// A file record per message ID: an ID another chat's file has (a
	// sender chooses its IDs) gets a new one, as a collision within a
	// chat does (review finding: the record was overwritten).
	if taken, err := tx.Has(n.st.files, fileKey(rec.ID)); err == nil && taken {
		var id chat.MessageID
		if _, err := n.rand.Read(id[:]); err != nil {
			return
		}
		rec.ID = id.String()
	}
	rec.File = ref.info(m)
	state := chat.FileAvailable
	if rec.Outgoing {
		state = chat.FileUploading // a copy of our own, sent from another device
	}
	if err := n.putFile(tx, &fileRecord{ID: rec.ID, Chat: rec.Chat, From: rec.From, Outgoing: rec.Outgoing, SentAt: rec.SentAt, Ref: *ref, State: state}); err != nil {
		n.log.Warn("files: store a received file", "err", err)
	}
}

// Files lists a chat's files (chat: a contact), oldest first.
func (n *Node) Files(_ context.Context, contact string) ([]chat.File, error) {
	var out []chat.File
	err := n.db.View(func(tx *storage.Txn) error {
		var id string
		c, err := n.resolve(tx, contact)
		switch {
		case err == nil:
			id = c.Account.String()
		case errors.Is(err, chat.ErrUnknownContact):
			l, gerr := n.findGroup(tx, contact)
			if gerr != nil {
				return err
			}
			g := l.Group()
			id = hex.EncodeToString(g[:])
		default:
			return err
		}
		return tx.Iterate(n.st.files, nil, func(_, v []byte) error {
			var r fileRecord
			if err := json.Unmarshal(v, &r); err != nil {
				return err
			}
			if r.Chat == id {
				out = append(out, r.view())
			}
			return nil
		})
	})
	slices.SortStableFunc(out, func(a, b chat.File) int { return a.SentAt.Compare(b.SentAt) })
	return out, err
}

func (n *Node) wakeFiles() {
	if n.files == nil {
		return
	}
	select {
	case n.files.wake <- struct{}{}:
	default:
	}
}

// Download fetches a received file's chunks — from the sender's node if
// it answers, else from the relays the message names — checks each, and
// writes the file to out (default: the home's downloads directory). It
// resumes a download cut short; it returns when the file is complete and
// verified.
func (n *Node) Download(ctx context.Context, id, out string) (chat.File, error) {
	if n.files == nil {
		return chat.File{}, fmt.Errorf("%w: the node is not running", chat.ErrUnavailable)
	}
	f := n.files
	f.mu.Lock()
	if f.active[id] {
		f.mu.Unlock()
		return chat.File{}, fmt.Errorf("%w: this file is being downloaded already", chat.ErrExists)
	}
	f.active[id] = true
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		delete(f.active, id)
		f.mu.Unlock()
	}()
	var rec *fileRecord
	if err := n.db.View(func(tx *storage.Txn) (err error) { rec, err = n.getFile(tx, id); return err }); err != nil {
		return chat.File{}, err
	}
	if rec.Outgoing {
		return chat.File{}, fmt.Errorf("%w: a file this account sent", chat.ErrInvalid)
	}
	m, err := rec.manifest()
	if err != nil {
		return chat.File{}, fmt.Errorf("%w: %w", chat.ErrInvalid, err)
	}
	if rec.State == chat.FileDownloaded && rec.Path != "" && (out == "" || out == rec.Path) {
		if _, err := os.Stat(rec.Path); err == nil {
			return rec.view(), nil
		}
	}
	// Where to write: the path of a download cut short or failed (it
	// resumes, or starts over in place), else a path reserved now — its
	// DEST.part created exclusively, so that two downloads never share
	// one (review finding).
	ours := rec.Path != "" && (rec.State == chat.FileDownloading || rec.State == chat.FileFailed)
	if out != "" {
		if out, err = filepath.Abs(out); err != nil {
			return chat.File{}, err
		}
	}
	switch {
	case ours && (out == "" || out == rec.Path):
		out = rec.Path
		if err := touchPart(out + ".part"); err != nil {
			return chat.File{}, err
		}
	case out == "":
		if out, err = n.reserveDownload(fileName(m.Name)); err != nil {
			return chat.File{}, err
		}
	default:
		if err := reservePart(out + ".part"); err != nil {
			return chat.File{}, err
		}
	}
	start := 0
	if rec.State == chat.FileDownloading && rec.Path == out {
		start = rec.Done // resume
		// Only from what the .part holds: a .part cut short or replaced
		// meanwhile (review finding: a deletion removed it, and the
		// resume filled the gap with zeros) starts over.
		if fi, err := os.Stat(out + ".part"); err != nil || fi.Size() < int64(start)*filecrypt.ChunkSize {
			start = 0
		}
	}
	rec, err = n.updateFile(id, func(r *fileRecord) error {
		r.State, r.Path, r.Done, r.Error = chat.FileDownloading, out, start, ""
		return nil
	})
	if err != nil {
		return chat.File{}, err
	}
	if err := n.fetchChunks(ctx, rec, m, out+".part", start); err != nil {
		if ctx.Err() == nil && !errors.Is(err, context.Canceled) {
			// A chunk that is the one named and does not open under the
			// file's key: no source and no retry can fix it, so what was
			// written goes, and the path with it — a retry reserves a new
			// one (review finding: it reused the path, which another
			// download of the same name had taken meanwhile, and replaced
			// that file).
			bad := errors.Is(err, filecrypt.ErrAuth)
			if bad {
				os.Remove(out + ".part")
			}
			_, _ = n.updateFile(id, func(r *fileRecord) error {
				r.State, r.Error = chat.FileFailed, err.Error()
				if bad {
					r.Done, r.Path = 0, ""
				}
				return nil
			})
		}
		return chat.File{}, err
	}
	if err := os.Rename(out+".part", out); err != nil {
		return chat.File{}, err
	}
	rec, err = n.updateFile(id, func(r *fileRecord) error { r.State, r.Done = chat.FileDownloaded, len(m.Chunks); return nil })
	if err != nil {
		return chat.File{}, err
	}
	return rec.view(), nil
}

// maxDownloadName bounds a downloaded file's name, leaving room in the
// file system's 255 bytes for " (999)" and ".part".
const maxDownloadName = 200

// reserveDownload picks a new path in the home's downloads directory for
// name and reserves it (its .part created exclusively).
func (n *Node) reserveDownload(name string) (string, error) {
	dir := filepath.Join(n.cfg.Home, "downloads")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	name = shortName(name, maxDownloadName)
	ext := filepath.Ext(name)
	base := strings.TrimSuffix(name, ext)
	for i := range 1000 {
		p := filepath.Join(dir, name)
		if i > 0 {
			p = filepath.Join(dir, fmt.Sprintf("%s (%d)%s", base, i, ext))
		}
		if _, err := os.Lstat(p); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		err := reservePart(p + ".part")
		if errors.Is(err, fs.ErrExist) {
			continue
		}
		return p, err
	}
	return "", fmt.Errorf("%w: no free name for %q in %s", chat.ErrExists, name, dir)
}

// reservePart creates a download's .part, failing if it exists.
func reservePart(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("%w: %s exists (another download, or one left behind): %w", chat.ErrExists, p, err)
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// touchPart makes sure a resumed download's .part exists.
func touchPart(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

// shortName cuts name to at most max bytes, keeping its extension.
func shortName(name string, max int) string {
	if len(name) <= max {
		return name
	}
	ext := filepath.Ext(name)
	if len(ext) > 16 {
		ext = ""
	}
	base := strings.TrimSuffix(name, ext)
	for len(base)+len(ext) > max {
		_, size := lastRune(base)
		base = base[:len(base)-size]
	}
	return base + ext
}

// fetchBatch is the chunks asked for over one stream, fetchStreams the
// streams at once (peergram-bench F1: two streams 0.45 of a raw
// stream's speed, four 0.49).
const (
	fetchBatch   = 16
	fetchStreams = 4
)

// fetchChunks writes chunks start… of m into part, recording progress.
// No second pass over the plaintext checks the whole file: each chunk
// matched its name and opened under the file's key with its position,
// the file's size and the chunk count in its associated data, so the
// chunks written are the file the sender encrypted; progress is
// recorded only for chunks synced to disk.
func (n *Node) fetchChunks(ctx context.Context, rec *fileRecord, m *filecrypt.Manifest, part string, start int) error {
	w, err := os.OpenFile(part, os.O_RDWR, 0o600) // reserved by Download
	if err != nil {
		return err
	}
	defer w.Close()
	srcs := n.fileSources(rec)
	tok := rec.token()
	type result struct {
		i   int
		pt  []byte
		err error
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, fetchStreams*fetchBatch)
	next := start
	inflight := 0
	done := start
	launch := func() {
		// Batches of fetchBatch chunks, each over one stream,
		// fetchStreams at once; at most that many batches past the last
		// chunk written, so a chunk slow to come holds a few in memory,
		// not the file.
		for inflight < fetchStreams && next < len(m.Chunks) && next < done+fetchStreams*fetchBatch {
			from, to := next, min(next+fetchBatch, len(m.Chunks))
			next = to
			inflight++
			go func() {
				send := func(r result) {
					select {
					case results <- r:
					case <-ctx.Done(): // the download ended
					}
				}
				n.fetchBatch(ctx, srcs, tok, m, from, to, func(i int, pt []byte, err error) { send(result{i, pt, err}) })
				send(result{i: -1}) // the batch is done
			}()
		}
	}
	// Progress is recorded only for what is on disk: every half second,
	// at the end, and when the download stops for any reason (a client
	// gone, an error), so the next attempt resumes from the last chunk
	// written, not the last one recorded.
	saved, lastSaved := start, time.Now()
	save := func() error {
		if err := w.Sync(); err != nil {
			return err
		}
		d := done
		if _, err := n.updateFile(rec.ID, func(r *fileRecord) error { r.Done = d; return nil }); err != nil {
			return err
		}
		saved, lastSaved = d, time.Now()
		return nil
	}
	defer func() {
		if done > saved {
			if err := save(); err != nil {
				n.log.Warn("files: download progress not recorded", "file", rec.ID, "err", err)
			}
		}
	}()
	launch()
	pending := map[int][]byte{}
	for done < len(m.Chunks) {
		var r result
		select {
		case r = <-results:
		case <-ctx.Done():
			// The fetchers stop without a word once ctx is done.
			return ctx.Err()
		}
		if r.err != nil {
			return r.err
		}
		if r.i < 0 {
			inflight--
			launch()
			continue
		}
		pending[r.i] = r.pt
		for {
			pt, ok := pending[done]
			if !ok {
				break
			}
			if _, err := w.WriteAt(pt, int64(done)*filecrypt.ChunkSize); err != nil {
				return err
			}
			delete(pending, done)
			done++
		}
		if time.Since(lastSaved) > 500*time.Millisecond || done == len(m.Chunks) {
			if err := save(); err != nil {
				return err
			}
		}
		launch()
	}
	if err := w.Truncate(m.Size); err != nil {
		return err
	}
	return w.Sync()
}

// fileSource is a place to fetch a file's chunks from.
type fileSource struct {
	c    *blobs.Client
	peer peer.ID
	name string
}

// fileSources are the sender's node first, then the relays.
func (n *Node) fileSources(rec *fileRecord) []fileSource {
	var out []fileSource
	if p, err := peer.Decode(rec.Ref.Peer); err == nil && p != n.host.ID() {
		out = append(out, fileSource{c: blobs.NewClientFor(n.host, FileProtocolID), peer: p, name: "sender"})
	}
	for _, a := range rec.Ref.Relays {
		ma, err := multiaddr.NewMultiaddr(a)
		if err != nil {
			continue
		}
		ai, err := peer.AddrInfoFromP2pAddr(ma)
		if err != nil {
			continue
		}
		// The sender's word: addresses only for a peer this node knows
		// no address of, never added to a known peer's (an outside
		// review planted its own address for a member's home relay,
		// dialled on every reconnection).
		if len(n.host.Peerstore().Addrs(ai.ID)) == 0 && n.host.Network().Connectedness(ai.ID) != network.Connected {
			n.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, time.Hour)
		}
		out = append(out, fileSource{c: blobs.NewClient(n.host), peer: ai.ID, name: "relay " + ai.ID.String()})
	}
	return out
}

// fetchBatch gets chunks [from, to) — over one stream from the first
// source that answers, then one by one (fetchChunk) for those it did not
// give right — and hands each to got, in any order.
func (n *Node) fetchBatch(ctx context.Context, srcs []fileSource, tok blobs.Token, m *filecrypt.Manifest, from, to int, got func(int, []byte, error)) {
	left := map[int]bool{}
	for i := from; i < to; i++ {
		left[i] = true
	}
	for _, s := range srcs {
		if len(left) == 0 || ctx.Err() != nil {
			break
		}
		var idx []int
		var hs [][32]byte
		for i := from; i < to; i++ {
			if left[i] {
				idx, hs = append(idx, i), append(hs, m.Chunks[i])
			}
		}
		fctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := s.c.GetMany(fctx, s.peer, tok, hs, func(k int, ct []byte, err error) error {
			if err != nil {
				return nil // not here: the next source, or one by one
			}
			i := idx[k]
			pt, err := filecrypt.OpenChunk(nil, m.Key, m.Size, i, m.Chunks[i], ct)
			if errors.Is(err, filecrypt.ErrAuth) {
				got(i, nil, fmt.Errorf("%w: the sender's file does not match its description: %w", chat.ErrInvalid, err))
				return err
			}
			if err != nil {
				n.log.Warn("files: a chunk refused", "from", s.name, "chunk", i, "err", err)
				return nil
			}
			delete(left, i)
			got(i, pt, nil)
			return nil
		})
		cancel()
		if errors.Is(err, filecrypt.ErrAuth) {
			return
		}
		if err != nil {
			n.log.Debug("files: a source did not answer", "from", s.name, "err", err)
		}
	}
	for i := from; i < to; i++ {
		if left[i] {
			pt, err := n.fetchChunk(ctx, srcs, tok, m, i)
			got(i, pt, err)
			if err != nil {
				return
			}
		}
	}
}

// fetchChunk gets chunk i from the first source that has it right,
// retrying while ctx lasts: a chunk that fails its check (corrupted,
// another file's) is fetched again elsewhere.
func (n *Node) fetchChunk(ctx context.Context, srcs []fileSource, tok blobs.Token, m *filecrypt.Manifest, i int) ([]byte, error) {
	wait := 200 * time.Millisecond
	for {
		var errs []error
		for _, s := range srcs {
			fctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			ct, _, err := s.c.Get(fctx, s.peer, tok, m.Chunks[i], 0, 0)
			cancel()
			if err == nil {
				pt, err := filecrypt.OpenChunk(nil, m.Key, m.Size, i, m.Chunks[i], ct)
				if err == nil {
					return pt, nil
				}
				if errors.Is(err, filecrypt.ErrAuth) {
					// The chunk is the one the manifest names and does
					// not decrypt: the manifest is wrong, no source can
					// help (review finding: retried forever).
					return nil, fmt.Errorf("%w: the sender's file does not match its description: %w", chat.ErrInvalid, err)
				}
				n.log.Warn("files: a chunk refused", "from", s.name, "chunk", i, "err", err)
			}
			errs = append(errs, fmt.Errorf("%s: %w", s.name, err))
		}
		if len(srcs) == 0 {
			return nil, fmt.Errorf("%w: nowhere to fetch the file from", chat.ErrUnavailable)
		}
		n.log.Debug("files: chunk not fetched; retrying", "chunk", i, "err", errors.Join(errs...))
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// runUploads uploads the files sent that their recipients did not fetch
// directly within Config.FileUploadAfter to the first home relay, chunk
// by chunk (resuming: the relay tells which it has).
func (n *Node) runUploads(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-n.files.wake:
		}
		var todo, renew []*fileRecord
		_ = n.db.View(func(tx *storage.Txn) error {
			return tx.Iterate(n.st.files, nil, func(_, v []byte) error {
				var r fileRecord
				if json.Unmarshal(v, &r) != nil {
					return nil
				}
				if n.photoDue(tx, &r) {
					renew = append(renew, &r)
				}
				if r.Outgoing && r.State == chat.FileUploading {
					todo = append(todo, &r)
				} else if !r.Outgoing && r.State == chat.FileAvailable && r.Error == "" {
					// (One the automatic download refused — not the type it
					// claimed — is not fetched again unasked: an outside
					// review saw a group photo fetched every minute.)
					n.autoDownload(ctx, &r)
				}
				return nil
			})
		})
		for _, r := range todo {
			if ctx.Err() != nil {
				return
			}
			n.uploadFile(ctx, r)
		}
		for _, r := range renew {
			if ctx.Err() != nil {
				return
			}
			n.renewPhoto(ctx, r)
		}
	}
}

// autoDownload starts the download of a small photo, sticker or voice
// message (at most Config.AutoDownload bytes), once a minute at most.
// The kind is the sender's word, so what comes without being asked goes
// to DIR/media under the message's ID with the extension of its claimed
// type, and stays only if its content is that type (review finding: a
// contact's "photos" were executables, written into downloads/ under
// the names the contact chose).
func (n *Node) autoDownload(ctx context.Context, r *fileRecord) {
	limit := n.cfg.AutoDownload
	if limit == 0 {
		limit = DefaultAutoDownload
	}
	want, ok := autoTypes[media.Kind(r.Ref.Kind)]
	if !ok {
		return
	}
	m, err := r.manifest()
	if err != nil || m.Size > limit {
		return
	}
	f := n.files
	f.mu.Lock()
	if f.active[r.ID] || time.Since(f.tried[r.ID]) < time.Minute {
		f.mu.Unlock()
		return
	}
	f.tried[r.ID] = time.Now()
	f.mu.Unlock()
	go func() {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		dir := filepath.Join(n.cfg.Home, "media")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			n.log.Warn("files: automatic download", "err", err)
			return
		}
		got, err := n.Download(dctx, r.ID, filepath.Join(dir, r.ID+want.ext))
		if err != nil {
			n.log.Info("files: automatic download", "message", r.ID, "err", err)
			return
		}
		if mime, err := detectFile(got.Path); err != nil || mime != want.mime {
			os.Remove(got.Path)
			_, _ = n.updateFile(r.ID, func(rec *fileRecord) error {
				rec.State, rec.Path, rec.Done = chat.FileAvailable, "", 0
				rec.Error = fmt.Sprintf("sent as a %s, but its content is %s: not downloaded automatically", r.Ref.Kind, mime)
				return nil
			})
			n.log.Warn("files: an automatic download was not what it claimed; removed", "message", r.ID, "kind", r.Ref.Kind, "content", mime)
		}
	}()
}

// autoTypes are the kinds downloaded without being asked, with the one
// content type each may have and its file extension.
var autoTypes = map[media.Kind]struct{ mime, ext string }{
	media.KindPhoto:   {"image/jpeg", ".jpg"}, // photos are sent re-encoded as JPEG
	media.KindSticker: {"image/webp", ".webp"},
	media.KindVoice:   {"audio/ogg", ".ogg"},
}

func detectFile(p string) (string, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	mime, _, err := media.Detect(f)
	return mime, err
}

// DefaultAutoDownload is the largest photo, sticker or voice message
// downloaded without being asked (Config.AutoDownload).
const DefaultAutoDownload = 2 << 20

func (n *Node) uploadAfter() time.Duration {
	if n.cfg.FileUploadAfter > 0 {
		return n.cfg.FileUploadAfter
	}
	return 15 * time.Second
}

// uploadFile finishes an outgoing file: fetched whole by the recipient,
// or uploaded to a relay once FileUploadAfter passed without a direct
// fetch going on.
func (n *Node) uploadFile(ctx context.Context, r *fileRecord) {
	m, err := r.manifest()
	if err != nil {
		return
	}
	tok := r.token()
	f := n.files
	f.mu.Lock()
	s := f.served[tok]
	all, recent := false, false
	if s != nil {
		all = len(s.chunks) >= len(m.Chunks)
		recent = time.Since(s.at) < n.uploadAfter()
	}
	f.mu.Unlock()
	if all && !r.Group { // (a group's members are many: its files always go to a relay)
		_, _ = n.updateFile(r.ID, func(r *fileRecord) error { r.State, r.Done = chat.FileUploaded, len(m.Chunks); return nil })
		return
	}
	if recent || n.cfg.Now().Sub(r.SentAt) < n.uploadAfter() || len(n.relays) == 0 {
		return
	}
	relay := n.relays[0].ID
	c := blobs.NewClient(n.host)
	n.mu.Lock()
	cert := n.keys.cert
	n.mu.Unlock()
	hctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	have, err := c.Has(hctx, relay, tok, hashes(m.Chunks))
	cancel()
	if err != nil {
		n.log.Info("files: relay unreachable for an upload", "err", err)
		return
	}
	var missing []int
	for i := range m.Chunks {
		if !have[i] {
			missing = append(missing, i)
		}
	}
	// One stream: uploads go out while the relay answers the earlier
	// ones (a Put per stream waited for each write on the relay).
	pctx, cancel := context.WithTimeout(ctx, time.Hour)
	defer cancel()
	fail := func(err error) {
		_, _ = n.updateFile(r.ID, func(r *fileRecord) error { r.State, r.Error = chat.FileFailed, err.Error(); return nil })
	}
	var readErr error
	err = c.PutMany(pctx, relay, n.keys.device, cert, tok, len(missing), func(k int) ([]byte, error) {
		data, err := f.store.Read(m.Chunks[missing[k]])
		if err != nil {
			readErr = err
		}
		return data, err
	}, func(k int, err error) error {
		if err != nil {
			return err
		}
		if done := k + 1; done%16 == 0 {
			_, _ = n.updateFile(r.ID, func(r *fileRecord) error { r.Done = len(m.Chunks) - len(missing) + done; return nil })
		}
		return nil
	})
	if readErr != nil {
		fail(readErr) // our own chunk is gone
		return
	}
	if err != nil {
		var se *blobs.StatusError
		if errors.As(err, &se) && (se.Code == blobs.CodeQuota || se.Code == blobs.CodeFull || se.Code == blobs.CodeInvalid) {
			fail(err)
		} else {
			n.log.Info("files: upload cut; resumes", "err", err)
		}
		return
	}
	_, _ = n.updateFile(r.ID, func(r *fileRecord) error { r.State, r.Done = chat.FileUploaded, len(m.Chunks); return nil })
}

func hashes(hs []filecrypt.Hash) [][32]byte {
	out := make([][32]byte, len(hs))
	for i, h := range hs {
		out[i] = h
	}
	return out
}

// maxPhotoBytes bounds the photos prepared (read whole into memory).
const maxPhotoBytes = 64 << 20

// prepareMedia prepares a photo (compressed into a temporary file, which
// it returns, with its thumbnail in ref) or a sticker (its thumbnail);
// nil and no error when the file goes as it is.
func (n *Node) prepareMedia(f *os.File, size int64, kind media.Kind, ref *fileRef) (*os.File, error) {
	if kind != media.KindPhoto || size > maxPhotoBytes {
		return nil, nil
	}
	data, err := io.ReadAll(io.LimitReader(f, maxPhotoBytes))
	if err != nil {
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	if thumb, ok := media.Sticker(data); ok {
		ref.Kind, ref.Thumb = string(media.KindSticker), thumb
		return nil, nil
	}
	tmp, err := os.CreateTemp(n.cfg.Home, "photo-*.jpg")
	if err != nil {
		return nil, err
	}
	p, err := media.PreparePhoto(data, tmp)
	if err == nil {
		_, err = tmp.Seek(0, io.SeekStart)
	}
	if err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return nil, err
	}
	ref.Thumb, ref.Width, ref.Height = p.Thumb, p.Width, p.Height
	return tmp, nil
}

// DeleteFile deletes a file of a chat: for this account alone (its
// record, its .part, and a sent file's chunks once they are on a relay
// or fetched), or — everyone, the sender only — for every recipient too:
// a "file-delete" message goes to the chat (over the pairwise session,
// or as a group message), whose nodes drop the file, and the relays
// drop its blobs (they go once nothing references them).
func (n *Node) DeleteFile(ctx context.Context, id string, everyone bool) error {
	if n.files == nil {
		return fmt.Errorf("%w: the node is not running", chat.ErrUnavailable)
	}
	var rec *fileRecord
	if err := n.db.View(func(tx *storage.Txn) (err error) { rec, err = n.getFile(tx, id); return err }); err != nil {
		return err
	}
	if everyone && !rec.Outgoing {
		return fmt.Errorf("%w: only the sender deletes a file for everyone", chat.ErrInvalid)
	}
	m, err := rec.manifest()
	if err != nil {
		return fmt.Errorf("%w: %w", chat.ErrInvalid, err)
	}
	if everyone {
		if rec.Group {
			if _, err := n.postGroup(ctx, rec.Chat, &groupBody{DeleteFile: rec.ID}, nil); err != nil {
				return err
			}
		} else {
			var to identity.AccountID
			var err error
			if to, err = identity.ParseAccountID(rec.Chat); err != nil {
				return err
			}
			var mid chat.MessageID
			if _, err := n.rand.Read(mid[:]); err != nil {
				return err
			}
			body, err := json.Marshal(payload{Kind: "file-delete", IDs: []string{rec.ID}, DT: n.tokenHex()})
			if err != nil {
				return err
			}
			if err := n.db.Update(func(tx *storage.Txn) error {
				return n.enqueue(tx, &job{ID: mid, To: to, Payload: body, SentAt: n.cfg.Now().UnixMilli()})
			}); err != nil {
				return err
			}
			n.notify(to)
		}
		// The relays' copies: only this account's references exist.
		n.mu.Lock()
		cert := n.keys.cert
		n.mu.Unlock()
		c := blobs.NewClient(n.host)
		for _, r := range n.relays {
			dctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			if err := c.Delete(dctx, r.ID, n.keys.device, cert, hashes(m.Chunks)); err != nil {
				n.log.Info("files: a relay did not delete a file's blobs (they expire)", "relay", r.ID, "err", err)
			}
			cancel()
		}
	}
	return n.dropFile(rec, m, everyone || rec.State == chat.FileUploaded)
}

// dropFile removes a file's record and .part, and a sent file's chunks
// if dropChunks.
func (n *Node) dropFile(rec *fileRecord, m *filecrypt.Manifest, dropChunks bool) error {
	if err := n.db.Update(func(tx *storage.Txn) error { return tx.Delete(n.st.files, fileKey(rec.ID)) }); err != nil {
		return err
	}
	if rec.Path != "" && rec.State != chat.FileDownloaded {
		os.Remove(rec.Path + ".part")
	}
	if rec.Outgoing && dropChunks {
		if err := n.files.store.Drop(n.keys.account.ID(), hashes(m.Chunks)...); err != nil {
			return err
		}
	}
	v := rec.view()
	v.State = chat.FileDeleted
	n.events.publish(chat.Event{Type: chat.EventFile, File: &v})
	return nil
}

// fileDeleteTx takes a sender's deletion of its files (from the
// pairwise session or a group message): only files this sender sent in
// that chat go.
func (n *Node) fileDeleteTx(tx *storage.Txn, chatID string, from identity.AccountID, ids []string) ([]chat.Event, error) {
	var evs []chat.Event
	for _, id := range ids {
		rec, err := n.getFile(tx, id)
		if err != nil {
			continue
		}
		if rec.Outgoing || rec.Chat != chatID || rec.From != from.String() {
			n.log.Info("files: a deletion by someone who did not send the file, ignored", "file", id, "from", from.String())
			continue
		}
		if err := tx.Delete(n.st.files, fileKey(id)); err != nil {
			return nil, err
		}
		if rec.Path != "" && rec.State != chat.FileDownloaded {
			os.Remove(rec.Path + ".part")
		}
		v := rec.view()
		v.State = chat.FileDeleted
		evs = append(evs, chat.Event{Type: chat.EventFile, File: &v})
	}
	return evs, nil
}
