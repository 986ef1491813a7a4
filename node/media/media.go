// Package media prepares what a user sends as a file: it tells the kind
// of content from its bytes (never from its name), and turns a photo into
// what a chat shows — at most MaxPhotoSide pixels on its long side,
// upright (the EXIF orientation applied), re-encoded as JPEG with no
// metadata at all (no GPS position, camera or time), with a small
// thumbnail that travels inside the message.
//
// Why re-encode rather than strip tags: a re-encoded image carries only
// pixels, so no metadata format (EXIF, XMP, IPTC, maker notes, in any
// container) can leak through; and a phone's 12 MP photo becomes a few
// hundred kilobytes, as Telegram sends it. `--as-file` keeps the original
// bytes, metadata included.
//
// Decoders: the standard library's JPEG, PNG and GIF, and
// golang.org/x/image's BMP, TIFF and WEBP (through
// github.com/disintegration/imaging, which also reads the EXIF
// orientation). HEIF/HEIC photos are detected but not decoded (no Go
// decoder): they are sent as files.
package media

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"strings"

	"github.com/disintegration/imaging"
	"github.com/gabriel-vasile/mimetype"
	_ "golang.org/x/image/bmp"  // BMP decoder
	_ "golang.org/x/image/tiff" // TIFF decoder
	_ "golang.org/x/image/webp" // WEBP decoder
)

// Kind is what a file is shown as.
type Kind string

// Kinds.
const (
	KindPhoto    Kind = "photo"
	KindVideo    Kind = "video"
	KindAudio    Kind = "audio"
	KindVoice    Kind = "voice"   // Ogg/Opus
	KindSticker  Kind = "sticker" // a small WEBP
	KindDocument Kind = "document"
	KindArchive  Kind = "archive"
	KindFile     Kind = "file"
)

const (
	// MaxPhotoSide bounds a sent photo's long side.
	MaxPhotoSide = 2560
	// ThumbSide bounds a thumbnail's long side.
	ThumbSide = 320
	// MaxPixels bounds the photos decoded (a decompression bomb of
	// 60,000 × 60,000 pixels would take 14 GB): 100 MP.
	MaxPixels = 100_000_000
	// MaxStickerSide bounds a sticker (Telegram's are 512 px).
	MaxStickerSide = 512
	// sniff is what detection reads.
	sniff = 3072
)

// ErrNotPhoto reports an image this package cannot prepare (HEIF, too
// many pixels, not decodable): send it as a file.
var ErrNotPhoto = errors.New("media: not a photo this node can prepare")

// Detect reads the start of r and returns its media type and kind.
func Detect(r io.Reader) (string, Kind, error) {
	head := make([]byte, sniff)
	n, err := io.ReadFull(r, head)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", "", fmt.Errorf("media: %w", err)
	}
	head = head[:n]
	m := mimetype.Detect(head).String()
	if i := strings.IndexByte(m, ';'); i >= 0 {
		m = m[:i]
	}
	return m, kindOf(m, head), nil
}

func kindOf(m string, head []byte) Kind {
	switch {
	case m == "audio/ogg" && len(head) >= 36 && bytes.Equal(head[28:36], []byte("OpusHead")):
		return KindVoice
	case strings.HasPrefix(m, "image/"):
		return KindPhoto
	case strings.HasPrefix(m, "video/"):
		return KindVideo
	case strings.HasPrefix(m, "audio/"):
		return KindAudio
	case m == "application/zip", m == "application/vnd.rar", m == "application/x-tar", m == "application/gzip",
		m == "application/x-7z-compressed":
		return KindArchive
	case m == "application/pdf", strings.HasPrefix(m, "application/vnd.openxmlformats-officedocument."),
		strings.HasPrefix(m, "application/vnd.oasis.opendocument."), m == "application/msword",
		m == "application/vnd.ms-excel", m == "application/vnd.ms-powerpoint", strings.HasPrefix(m, "text/"):
		return KindDocument
	}
	return KindFile
}

// Photo is a prepared photo's description.
type Photo struct {
	Width, Height int    // of the prepared image
	Thumb         []byte // JPEG, at most ThumbSide on its long side
}

// PreparePhoto decodes the image in data — refusing more than MaxPixels
// before decoding it — applies its EXIF orientation, fits it within
// MaxPhotoSide and writes it to w as JPEG without metadata.
func PreparePhoto(data []byte, w io.Writer) (Photo, error) {
	img, err := decode(data)
	if err != nil {
		return Photo{}, err
	}
	img = imaging.Fit(img, MaxPhotoSide, MaxPhotoSide, imaging.Lanczos)
	if err := jpeg.Encode(w, img, &jpeg.Options{Quality: 87}); err != nil {
		return Photo{}, fmt.Errorf("media: %w", err)
	}
	b := img.Bounds()
	thumb, err := Thumbnail(img)
	if err != nil {
		return Photo{}, err
	}
	return Photo{Width: b.Dx(), Height: b.Dy(), Thumb: thumb}, nil
}

// AvatarSide is a prepared avatar's side (Telegram's profile and group
// photos are 640 × 640).
const AvatarSide = 640

// PrepareAvatar decodes the image in data as PreparePhoto does, crops
// it to a centred square, scales it to at most AvatarSide and writes it
// to w as JPEG without metadata; it returns the side.
func PrepareAvatar(data []byte, w io.Writer) (int, error) {
	img, err := decode(data)
	if err != nil {
		return 0, err
	}
	b := img.Bounds()
	side := min(b.Dx(), b.Dy(), AvatarSide)
	img = imaging.Fill(img, side, side, imaging.Center, imaging.Lanczos)
	if err := jpeg.Encode(w, img, &jpeg.Options{Quality: 87}); err != nil {
		return 0, fmt.Errorf("media: %w", err)
	}
	return side, nil
}

// Thumbnail is a small JPEG of img.
func Thumbnail(img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, imaging.Fit(img, ThumbSide, ThumbSide, imaging.Box), &jpeg.Options{Quality: 70}); err != nil {
		return nil, fmt.Errorf("media: %w", err)
	}
	return buf.Bytes(), nil
}

func decode(data []byte) (image.Image, error) {
	cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotPhoto, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 || int64(cfg.Width)*int64(cfg.Height) > MaxPixels {
		return nil, fmt.Errorf("%w: %d × %d pixels", ErrNotPhoto, cfg.Width, cfg.Height)
	}
	img, err := imaging.Decode(bytes.NewReader(data), imaging.AutoOrientation(true))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotPhoto, err)
	}
	return img, nil
}

// Sticker tells whether data is a sticker: a WEBP within
// MaxStickerSide on both sides; it returns its thumbnail.
func Sticker(data []byte) ([]byte, bool) {
	cfg, format, err := image.DecodeConfig(bytes.NewReader(data))
	if err != nil || format != "webp" || cfg.Width > MaxStickerSide || cfg.Height > MaxStickerSide {
		return nil, false
	}
	img, err := decode(data)
	if err != nil {
		return nil, false
	}
	thumb, err := Thumbnail(img)
	return thumb, err == nil
}
