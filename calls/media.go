package calls

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
	"github.com/pion/webrtc/v4/pkg/media"
	"github.com/pion/webrtc/v4/pkg/media/h264writer"
	"github.com/pion/webrtc/v4/pkg/media/ivfreader"
	"github.com/pion/webrtc/v4/pkg/media/ivfwriter"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
	"github.com/pion/webrtc/v4/pkg/media/oggwriter"
)

// ErrMedia is a media file that cannot be sent.
var ErrMedia = errors.New("calls: media file")

// source is a file a call sends from: Ogg/Opus audio or IVF/VP8 video.
type source struct {
	path string
	kind webrtc.RTPCodecType
}

// openSource checks that path is an Ogg/Opus or IVF/VP8 file and says
// which. It is read again from the start when the call sends it.
func openSource(path string) (source, error) {
	f, err := os.Open(path)
	if err != nil {
		return source{}, fmt.Errorf("%w: %w", ErrMedia, err)
	}
	defer f.Close()
	head := make([]byte, 64)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	switch {
	case bytes.HasPrefix(head, []byte("OggS")):
		if !bytes.Contains(head, []byte("OpusHead")) {
			return source{}, fmt.Errorf("%w: %s: Ogg without Opus", ErrMedia, path)
		}
		return source{path, webrtc.RTPCodecTypeAudio}, nil
	case bytes.HasPrefix(head, []byte("DKIF")):
		if _, h, err := ivfreader.NewWith(bytes.NewReader(head)); err != nil || h.FourCC != "VP80" {
			return source{}, fmt.Errorf("%w: %s: IVF that is not VP8", ErrMedia, path)
		}
		return source{path, webrtc.RTPCodecTypeVideo}, nil
	}
	return source{}, fmt.Errorf("%w: %s is neither Ogg/Opus nor IVF/VP8", ErrMedia, path)
}

// sampleWriter takes media samples: a local track, or one wrapped to
// seal each frame with SFrame first (group calls).
type sampleWriter interface {
	WriteSample(media.Sample) error
}

// play sends src on track at its own pace, once, from when ctx's call
// connects until the file ends or ctx is done.
func play(ctx context.Context, src source, track sampleWriter, sent *atomic.Uint64) error {
	f, err := os.Open(src.path)
	if err != nil {
		return err
	}
	defer f.Close()
	if src.kind == webrtc.RTPCodecTypeAudio {
		return playOgg(ctx, f, track, sent)
	}
	return playIVF(ctx, f, track, sent)
}

func playOgg(ctx context.Context, r io.Reader, track sampleWriter, sent *atomic.Uint64) error {
	ogg, _, err := oggreader.NewWith(r)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMedia, err)
	}
	var last uint64
	next := time.Now()
	for {
		page, h, err := ogg.ParseNextPage()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMedia, err)
		}
		if bytes.HasPrefix(page, []byte("OpusTags")) {
			continue
		}
		// Granule positions count 48 kHz samples.
		d := time.Duration(h.GranulePosition-last) * time.Second / 48000
		last = h.GranulePosition
		if d <= 0 || d > time.Second {
			d = 20 * time.Millisecond
		}
		if err := track.WriteSample(media.Sample{Data: page, Duration: d}); err != nil {
			return err
		}
		sent.Add(1)
		next = next.Add(d)
		if err := sleepUntil(ctx, next); err != nil {
			return nil
		}
	}
}

func playIVF(ctx context.Context, r io.Reader, track sampleWriter, sent *atomic.Uint64) error {
	ivf, h, err := ivfreader.NewWith(r)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrMedia, err)
	}
	d := time.Second / 30
	if h.TimebaseDenominator > 0 && h.TimebaseNumerator > 0 {
		d = time.Duration(h.TimebaseNumerator) * time.Second / time.Duration(h.TimebaseDenominator)
	}
	if d <= 0 || d > time.Second {
		d = time.Second / 30
	}
	next := time.Now()
	for {
		frame, _, err := ivf.ParseNextFrame()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || (err == nil && frame == nil) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("%w: %w", ErrMedia, err)
		}
		if err := track.WriteSample(media.Sample{Data: frame, Duration: d}); err != nil {
			return err
		}
		sent.Add(1)
		next = next.Add(d)
		if err := sleepUntil(ctx, next); err != nil {
			return nil
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// recordedTrack is what a recording needs to know of a track.
type recordedTrack interface {
	ID() string
	Kind() webrtc.RTPCodecType
	Codec() webrtc.RTPCodecParameters
}

// rtpWriter is what a recording needs of pion's media writers.
type rtpWriter interface {
	WriteRTP(*rtp.Packet) error
	Close() error
}

// maxRecordings bounds the files one call records (a peer that adds
// and swaps tracks could otherwise make any number).
const maxRecordings = 8

// newRecorder opens dir/<name>.<ext> for a received track: Opus to Ogg,
// VP8 to IVF, H.264 to an Annex B stream. The name is the track's ID
// made safe, then "-2", "-3", … until it names no file (review finding:
// an earlier recording was overwritten); it is reserved with O_EXCL.
func newRecorder(dir string, track recordedTrack) (rtpWriter, string, error) {
	codec := track.Codec().MimeType
	var ext string
	switch {
	case strings.EqualFold(codec, webrtc.MimeTypeOpus):
		ext = ".ogg"
	case strings.EqualFold(codec, webrtc.MimeTypeVP8):
		ext = ".ivf"
	case strings.EqualFold(codec, webrtc.MimeTypeH264):
		ext = ".h264"
	default:
		return nil, "", fmt.Errorf("%w: no recorder for %s", ErrMedia, codec)
	}
	base := fileName(track.ID(), track.Kind().String())
	var p string
	for i := 1; ; i++ {
		if i > 100 {
			return nil, "", fmt.Errorf("%w: no free name for %s in %s", ErrMedia, base, dir)
		}
		name := base
		if i > 1 {
			name = fmt.Sprintf("%s-%d", base, i)
		}
		p = filepath.Join(dir, name+ext)
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return nil, "", err
		}
		f.Close() // reserved; the writer opens it again
		break
	}
	var (
		w   rtpWriter
		err error
	)
	switch ext {
	case ".ogg":
		w, err = oggwriter.New(p, 48000, 2)
	case ".ivf":
		w, err = ivfwriter.New(p, ivfwriter.WithCodec(webrtc.MimeTypeVP8))
	default:
		w, err = h264writer.New(p)
	}
	return w, p, err
}

// fileName makes a track ID from a peer safe as a file name: letters,
// digits, '-' and '_' only, at most 48 of them; kind when nothing is
// left.
func fileName(id, kind string) string {
	var b strings.Builder
	for _, r := range id {
		if b.Len() >= 48 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' {
			b.WriteRune(r)
		}
	}
	if b.Len() == 0 {
		return kind
	}
	return b.String()
}
