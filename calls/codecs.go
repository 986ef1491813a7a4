package calls

import (
	"strconv"

	"github.com/pion/webrtc/v4"
)

// The codecs a call offers and accepts: Opus for audio; VP8, and H.264
// (constrained baseline and high, packetization mode 1) when the other
// side offers it, each video codec with its retransmission (RTX) stream.
// Pion's default set adds G.722, PCMU, PCMA, VP9, AV1, H.265 and more
// H.264 profiles, which no Peergram endpoint sends: they made every offer
// about 6 KB, and parsing them (SetRemoteDescription is quadratic in a
// description's codec lines) took milliseconds of every call's setup on
// both sides (peergram-bench C2). Every browser sends Opus and VP8.

// videoFeedback is the RTCP feedback every video codec takes.
var videoFeedback = []webrtc.RTCPFeedback{{Type: "goog-remb"}, {Type: "ccm", Parameter: "fir"}, {Type: "nack"}, {Type: "nack", Parameter: "pli"}}

// registerCodecs registers the call codecs in me. With bridge set, Opus
// and VP8 only, without RTX: the daemon's bridge to its web client
// rebuilds frames from exactly those.
func registerCodecs(me *webrtc.MediaEngine, bridge bool) error {
	type codec struct {
		mime, fmtp string
		pt, rtx    webrtc.PayloadType
	}
	video := []codec{{mime: webrtc.MimeTypeVP8, pt: 96, rtx: 97}}
	if !bridge {
		video = append(video,
			codec{webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f", 106, 107},
			codec{webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f", 102, 103},
			codec{webrtc.MimeTypeH264, "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=64001f", 112, 113},
		)
	}
	opus := webrtc.RTPCodecParameters{
		RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeOpus, ClockRate: 48000, Channels: 2, SDPFmtpLine: "minptime=10;useinbandfec=1"},
		PayloadType:        111,
	}
	if err := me.RegisterCodec(opus, webrtc.RTPCodecTypeAudio); err != nil {
		return err
	}
	for _, c := range video {
		p := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: c.mime, ClockRate: 90000, SDPFmtpLine: c.fmtp, RTCPFeedback: videoFeedback},
			PayloadType:        c.pt,
		}
		if err := me.RegisterCodec(p, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
		if bridge {
			continue
		}
		rtx := webrtc.RTPCodecParameters{
			RTPCodecCapability: webrtc.RTPCodecCapability{MimeType: webrtc.MimeTypeRTX, ClockRate: 90000, SDPFmtpLine: "apt=" + strconv.Itoa(int(c.pt))},
			PayloadType:        c.rtx,
		}
		if err := me.RegisterCodec(rtx, webrtc.RTPCodecTypeVideo); err != nil {
			return err
		}
	}
	return nil
}
