package media

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/image/bmp"
	"golang.org/x/image/tiff"
)

func picture(w, h int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), uint8(x + y), 255})
		}
	}
	// A red block in the top-left corner, to see where rotation puts it.
	for y := range h / 4 {
		for x := range w / 4 {
			img.Set(x, y, color.RGBA{255, 0, 0, 255})
		}
	}
	return img
}

func encoded(t *testing.T, enc func(*bytes.Buffer, image.Image) error) []byte {
	t.Helper()
	var b bytes.Buffer
	if err := enc(&b, picture(64, 48)); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func zipWith(t *testing.T, names ...string) []byte {
	t.Helper()
	var b bytes.Buffer
	z := zip.NewWriter(&b)
	for _, n := range names {
		w, err := z.Create(n)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte("<x/>"))
	}
	if err := z.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func tarball(t *testing.T) []byte {
	t.Helper()
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	if err := w.WriteHeader(&tar.Header{Name: "a.txt", Mode: 0o600, Size: 2}); err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("hi"))
	w.Close()
	return b.Bytes()
}

// box is an ISO base media box: size, type, payload.
func box(typ string, payload []byte) []byte {
	b := binary.BigEndian.AppendUint32(nil, uint32(8+len(payload)))
	return append(append(b, typ...), payload...)
}

func riff(form string, rest []byte) []byte {
	b := append([]byte("RIFF"), binary.LittleEndian.AppendUint32(nil, uint32(4+len(rest)))...)
	return append(append(b, form...), rest...)
}

// ogg is a first Ogg page whose first packet starts with head.
func ogg(head string) []byte {
	b := []byte("OggS\x00\x02")
	b = append(b, make([]byte, 20)...) // granule, serial, sequence, checksum
	b = append(b, 1, byte(len(head)))  // one segment
	return append(b, head...)
}

// TestDetect: each of the listed formats is told by its content — names
// play no part — from a small sample made here.
func TestDetect(t *testing.T) {
	mp4 := box("ftyp", []byte("isom\x00\x00\x02\x00isomiso2mp41"))
	cases := []struct {
		name string
		data []byte
		mime string
		kind Kind
	}{
		{"JPEG", encoded(t, func(b *bytes.Buffer, i image.Image) error { return jpeg.Encode(b, i, nil) }), "image/jpeg", KindPhoto},
		{"PNG", encoded(t, func(b *bytes.Buffer, i image.Image) error { return png.Encode(b, i) }), "image/png", KindPhoto},
		{"BMP", encoded(t, func(b *bytes.Buffer, i image.Image) error { return bmp.Encode(b, i) }), "image/bmp", KindPhoto},
		{"TIFF", encoded(t, func(b *bytes.Buffer, i image.Image) error { return tiff.Encode(b, i, nil) }), "image/tiff", KindPhoto},
		{"WEBP", riff("WEBP", []byte("VP8 \x00\x00\x00\x00")), "image/webp", KindPhoto},
		{"HEIF", box("ftyp", []byte("heic\x00\x00\x00\x00mif1heic")), "image/heic", KindPhoto},
		{"MP4", mp4, "video/mp4", KindVideo},
		{"MOV", box("ftyp", []byte("qt  \x00\x00\x02\x00qt  ")), "video/quicktime", KindVideo},
		{"AVI", riff("AVI ", []byte("LIST\x00\x00\x00\x00hdrlavih")), "video/x-msvideo", KindVideo},
		{"WMV", []byte{0x30, 0x26, 0xB2, 0x75, 0x8E, 0x66, 0xCF, 0x11, 0xA6, 0xD9, 0x00, 0xAA, 0x00, 0x62, 0xCE, 0x6C, 0, 0, 0, 0}, "video/x-ms-asf", KindVideo},
		{"MP3", append([]byte("ID3\x04\x00\x00\x00\x00\x00\x0a"), 0xFF, 0xFB, 0x90, 0x00), "audio/mpeg", KindAudio},
		{"AAC", []byte{0xFF, 0xF1, 0x50, 0x80, 0x02, 0x1F, 0xFC, 0x21}, "audio/aac", KindAudio},
		{"OGG", ogg("\x01vorbis\x00\x00\x00\x00\x02"), "audio/ogg", KindAudio},
		{"Ogg/Opus voice", ogg("OpusHead\x01\x01\x38\x01"), "audio/ogg", KindVoice},
		{"FLAC", []byte("fLaC\x00\x00\x00\x22"), "audio/flac", KindAudio},
		{"PDF", []byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), "application/pdf", KindDocument},
		{"DOCX", zipWith(t, "[Content_Types].xml", "word/document.xml"), "application/vnd.openxmlformats-officedocument.wordprocessingml.document", KindDocument},
		{"PPTX", zipWith(t, "[Content_Types].xml", "ppt/presentation.xml"), "application/vnd.openxmlformats-officedocument.presentationml.presentation", KindDocument},
		{"XLSX", zipWith(t, "[Content_Types].xml", "xl/workbook.xml"), "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", KindDocument},
		{"ZIP", zipWith(t, "a.txt"), "application/zip", KindArchive},
		{"RAR", []byte("Rar!\x1a\x07\x01\x00\x00\x00\x00"), "application/vnd.rar", KindArchive},
		{"TAR", tarball(t), "application/x-tar", KindArchive},
	}
	for _, c := range cases {
		m, k, err := Detect(bytes.NewReader(c.data))
		if err != nil || m != c.mime || k != c.kind {
			t.Errorf("%s: %q %q (%v), want %q %q", c.name, m, k, err, c.mime, c.kind)
		}
	}
}

// exifJPEG is a JPEG of img with an EXIF segment: orientation 6 (stored
// turned a quarter left: show it turned right) and a GPS map datum that
// carries a marker.
func exifJPEG(t *testing.T, img image.Image, marker string) []byte {
	t.Helper()
	var j bytes.Buffer
	if err := jpeg.Encode(&j, img, nil); err != nil {
		t.Fatal(err)
	}
	le := binary.LittleEndian
	tiffb := []byte("II*\x00")
	tiffb = le.AppendUint32(tiffb, 8)
	entry := func(b []byte, tag, typ uint16, count, value uint32) []byte {
		b = le.AppendUint16(b, tag)
		b = le.AppendUint16(b, typ)
		b = le.AppendUint32(b, count)
		return le.AppendUint32(b, value)
	}
	gpsIFD := uint32(8 + 2 + 2*12 + 4)
	tiffb = le.AppendUint16(tiffb, 2)
	tiffb = entry(tiffb, 0x0112, 3, 1, 6) // Orientation
	tiffb = entry(tiffb, 0x8825, 4, 1, gpsIFD)
	tiffb = le.AppendUint32(tiffb, 0)
	text := marker + "\x00"
	tiffb = le.AppendUint16(tiffb, 1)
	tiffb = entry(tiffb, 0x0012, 2, uint32(len(text)), gpsIFD+2+12+4) // GPSMapDatum
	tiffb = le.AppendUint32(tiffb, 0)
	tiffb = append(tiffb, text...)
	app1 := append([]byte("Exif\x00\x00"), tiffb...)
	seg := append([]byte{0xFF, 0xE1}, binary.BigEndian.AppendUint16(nil, uint16(2+len(app1)))...)
	seg = append(seg, app1...)
	raw := j.Bytes()
	return append(append(append([]byte(nil), raw[:2]...), seg...), raw[2:]...)
}

// TestPreparePhoto: a 3,000 × 1,200 photo with GPS data and orientation 6
// comes out upright (1,200 wide, 3,000 tall, fitted to 1,024 × 2,560),
// as JPEG, with no trace of its metadata, and with a thumbnail.
func TestPreparePhoto(t *testing.T) {
	const marker = "GPS-MARKER-51.5007N"
	in := exifJPEG(t, picture(3000, 1200), marker)
	if !bytes.Contains(in, []byte(marker)) {
		t.Fatal("setup: no marker in the input")
	}
	var out bytes.Buffer
	p, err := PreparePhoto(in, &out)
	if err != nil {
		t.Fatal(err)
	}
	if p.Width != 1024 || p.Height != 2560 {
		t.Fatalf("prepared %d × %d, want 1024 × 2560 (upright, fitted)", p.Width, p.Height)
	}
	b := out.Bytes()
	if bytes.Contains(b, []byte(marker)) || bytes.Contains(b, []byte("Exif")) {
		t.Fatal("metadata survived")
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	// Turned right: the red top-left corner is now at the top right.
	if r, g, _, _ := img.At(img.Bounds().Dx()-10, 10).RGBA(); r>>8 < 200 || g>>8 > 60 {
		t.Fatalf("top right is %d,%d: the orientation was not applied", r>>8, g>>8)
	}
	if m, _, _ := Detect(bytes.NewReader(p.Thumb)); m != "image/jpeg" || len(p.Thumb) > 64<<10 {
		t.Fatalf("thumbnail: %s, %d bytes", m, len(p.Thumb))
	}
	th, _ := jpeg.DecodeConfig(bytes.NewReader(p.Thumb))
	if max(th.Width, th.Height) != ThumbSide {
		t.Fatalf("thumbnail %d × %d", th.Width, th.Height)
	}
}

// TestPreparePhotoRefusals: a decompression bomb (declared 20,000 ×
// 20,000) is refused before decoding; a HEIF or garbage is not a photo.
func TestPreparePhotoRefusals(t *testing.T) {
	var bomb bytes.Buffer
	if err := png.Encode(&bomb, picture(4, 4)); err != nil {
		t.Fatal(err)
	}
	b := bomb.Bytes()
	binary.BigEndian.PutUint32(b[16:], 20000) // IHDR width
	binary.BigEndian.PutUint32(b[20:], 20000) // IHDR height
	for name, data := range map[string][]byte{
		"a bomb":  b,
		"HEIF":    box("ftyp", []byte("heic\x00\x00\x00\x00mif1heic")),
		"garbage": []byte("not an image"),
	} {
		if _, err := PreparePhoto(data, &bytes.Buffer{}); !errors.Is(err, ErrNotPhoto) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestProbeVideo: a two-second video made by ffmpeg (which CI installs)
// gets its size, duration and a JPEG thumbnail; without ffmpeg on the
// PATH, ErrNoFFmpeg.
func TestProbeVideo(t *testing.T) {
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Fatal("ffmpeg is not on the PATH (.ci/run installs it)")
	}
	p := filepath.Join(t.TempDir(), "clip.mp4")
	if out, err := exec.Command(ffmpeg, "-v", "error", "-f", "lavfi", "-i", "testsrc=duration=2:size=640x360:rate=10", "-c:v", "mpeg4", p).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg: %v: %s", err, out)
	}
	v, err := ProbeVideo(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if v.Width != 640 || v.Height != 360 || v.Duration < 1.9 || v.Duration > 2.1 {
		t.Fatalf("probed %+v", v)
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(v.Thumb))
	if err != nil || cfg.Width != ThumbSide || cfg.Height != 180 {
		t.Fatalf("thumbnail %d × %d (%v)", cfg.Width, cfg.Height, err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := ProbeVideo(context.Background(), p); !errors.Is(err, ErrNoFFmpeg) {
		t.Fatalf("without ffmpeg: %v", err)
	}
}

// TestPrepareAvatar: a 3,000 × 1,200 photo with GPS data comes out a
// 640 × 640 JPEG without its metadata; a small one keeps its short side;
// what is not an image is refused.
func TestPrepareAvatar(t *testing.T) {
	const marker = "GPS-MARKER-51.5007N"
	tests := []struct {
		name string
		in   []byte
		side int
	}{
		{"large", exifJPEG(t, picture(3000, 1200), marker), AvatarSide},
		{"small", exifJPEG(t, picture(300, 200), marker), 200},
	}
	for _, tc := range tests {
		var out bytes.Buffer
		side, err := PrepareAvatar(tc.in, &out)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		img, err := jpeg.Decode(bytes.NewReader(out.Bytes()))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if b := img.Bounds(); side != tc.side || b.Dx() != tc.side || b.Dy() != tc.side {
			t.Errorf("%s: side %d, image %d × %d, want %d square", tc.name, side, b.Dx(), b.Dy(), tc.side)
		}
		if bytes.Contains(out.Bytes(), []byte(marker)) {
			t.Errorf("%s: metadata survived", tc.name)
		}
	}
	if _, err := PrepareAvatar([]byte("not an image"), &bytes.Buffer{}); !errors.Is(err, ErrNotPhoto) {
		t.Fatalf("not an image: %v", err)
	}
}
