package media

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"time"
)

// ErrNoFFmpeg reports that ffmpeg or ffprobe is not on the PATH: videos
// are then sent without a thumbnail or duration (they play the same).
var ErrNoFFmpeg = errors.New("media: ffmpeg/ffprobe not on the PATH")

// Video is what ffprobe and ffmpeg tell of a video.
type Video struct {
	Width, Height int
	Duration      float64 // seconds
	Thumb         []byte  // JPEG, at most ThumbSide on its long side
}

// ProbeVideo runs ffprobe for a video's size and duration and ffmpeg for
// a thumbnail (a frame one second in, or halfway through a shorter one),
// each within a time limit.
func ProbeVideo(ctx context.Context, path string) (Video, error) {
	probe, err := exec.LookPath("ffprobe")
	if err != nil {
		return Video{}, ErrNoFFmpeg
	}
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		return Video{}, ErrNoFFmpeg
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, probe, "-v", "error", "-select_streams", "v:0",
		"-show_entries", "stream=width,height:format=duration", "-of", "json", "--", path).Output()
	if err != nil {
		return Video{}, fmt.Errorf("media: ffprobe: %w", err)
	}
	var info struct {
		Streams []struct {
			Width  int `json:"width"`
			Height int `json:"height"`
		} `json:"streams"`
		Format struct {
			Duration string `json:"duration"`
		} `json:"format"`
	}
	if err := json.Unmarshal(out, &info); err != nil || len(info.Streams) == 0 {
		return Video{}, fmt.Errorf("media: ffprobe found no video stream (%v)", err)
	}
	v := Video{Width: info.Streams[0].Width, Height: info.Streams[0].Height}
	v.Duration, _ = strconv.ParseFloat(info.Format.Duration, 64)
	at := min(1, v.Duration/2)
	var thumb bytes.Buffer
	cmd := exec.CommandContext(ctx, ffmpeg, "-v", "error", "-ss", strconv.FormatFloat(at, 'f', 3, 64), "-i", path,
		"-frames:v", "1", "-vf", fmt.Sprintf("scale=%d:%d:force_original_aspect_ratio=decrease", ThumbSide, ThumbSide),
		"-f", "image2pipe", "-vcodec", "mjpeg", "-")
	cmd.Stdout = &thumb
	if err := cmd.Run(); err != nil {
		return v, fmt.Errorf("media: ffmpeg: %w", err)
	}
	if thumb.Len() > 64<<10 {
		return v, errors.New("media: ffmpeg made a thumbnail over 64 KiB")
	}
	v.Thumb = thumb.Bytes()
	return v, nil
}
