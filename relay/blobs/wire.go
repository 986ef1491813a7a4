package blobs

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/peergram/peergram/crypto/filecrypt"
	"github.com/peergram/peergram/relay/internal/protoframe"
)

// ProtocolID is the blob store protocol.
const ProtocolID = "/peergram/blob/1.0.0"

// Frame types. Wire enum: append-only, never renumber.
const (
	typePut    uint8 = 0x01 // C→S; answered by Status
	typeGet    uint8 = 0x02 // C→S; answered by Data or Status
	typeData   uint8 = 0x03 // S→C
	typeHas    uint8 = 0x04 // C→S; answered by Have or Status
	typeHave   uint8 = 0x05 // S→C
	typeDelete uint8 = 0x06 // C→S; answered by Status
	typeStatus uint8 = 0x07 // S→C
)

// Bounds.
const (
	// MaxBlob bounds one blob: a file chunk's ciphertext.
	MaxBlob = filecrypt.MaxChunkCiphertext
	// MaxHashes is the most blobs one Has or Delete names (a 2 GiB file's
	// chunks).
	MaxHashes = filecrypt.MaxChunks
	maxPut    = MaxBlob + 4<<10
	maxData   = MaxBlob + 64
	control   = MaxHashes*36 + 4<<10
	maxText   = 512
)

func bound(t uint8) (int, bool) {
	switch t {
	case typePut:
		return maxPut, true
	case typeData:
		return maxData, true
	case typeGet, typeHas, typeHave, typeDelete, typeStatus:
		return control, true
	}
	return 0, false
}

// Code is a Status code. Wire enum: append-only.
type Code uint8

// Codes.
const (
	CodeOK          Code = 0
	CodeMalformed   Code = 1 // the request did not decode
	CodeInvalid     Code = 2 // a certificate, signature, time or hash that does not check
	CodeNotFound    Code = 3 // no such blob for this capability (or none at all: the same answer)
	CodeQuota       Code = 4 // the account's quota would overflow
	CodeFull        Code = 5 // the relay's capacity would overflow
	CodeRateLimited Code = 6
	CodeUnavailable Code = 7 // storage failed; try again
)

func (c Code) String() string {
	switch c {
	case CodeOK:
		return "ok"
	case CodeMalformed:
		return "malformed"
	case CodeInvalid:
		return "invalid"
	case CodeNotFound:
		return "not found"
	case CodeQuota:
		return "over quota"
	case CodeFull:
		return "relay full"
	case CodeRateLimited:
		return "rate limited"
	case CodeUnavailable:
		return "unavailable"
	}
	return fmt.Sprintf("code %d", uint8(c))
}

// Labels of the device signatures and of the capability's hash.
const (
	PutLabel    = "peergram/blob/put/v1"
	DeleteLabel = "peergram/blob/delete/v1"
	tokenLabel  = "peergram/blob/token/v1"
)

// Token is a read capability: whoever holds it (the uploader, and the
// recipients of the end-to-end message that carries it) reads the blobs
// uploaded with it. The relay keeps only its hash.
type Token [32]byte

// hash is what the relay keeps of a token.
func (t Token) hash() [32]byte {
	return sha256.Sum256(append([]byte(tokenLabel), t[:]...))
}

// Field numbers.
const (
	fHash      = 1 // bytes[32]; repeated in Has and Delete
	fTokenHash = 2 // bytes[32]
	fCert      = 3 // a DeviceCert
	fTime      = 4 // Unix ms
	fSig       = 5
	fData      = 6
	fToken     = 7 // bytes[32]
	fOffset    = 8
	fLength    = 9
	fIndex     = 10 // Have: the indices, in the request, of the blobs present; repeated
	fCode      = 11
	fText      = 12
	fSize      = 13 // Data: the blob's whole size
)

// putMsg uploads a blob: Data, named Hash (SHA-256 of Data), readable by
// the holders of the token whose hash is TokenHash, charged to the
// account of Cert, whose device signs (PutLabel, relay peer ID, Hash,
// TokenHash, Time).
type putMsg struct {
	Hash, TokenHash [32]byte
	Cert            []byte
	Time            int64
	Sig             []byte
	Data            []byte
}

func putSigned(relay string, hash, tokenHash [32]byte, timeMs int64) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(relay)))
	b = append(b, relay...)
	b = append(b, hash[:]...)
	b = append(b, tokenHash[:]...)
	return binary.BigEndian.AppendUint64(b, uint64(timeMs))
}

// getMsg reads Length bytes (0: to the end) from Offset of blob Hash.
type getMsg struct {
	Hash   [32]byte
	Token  Token
	Offset uint64
	Length uint64
}

// hasMsg asks which of Hashes the relay holds for Token.
type hasMsg struct {
	Token  Token
	Hashes [][32]byte
}

// deleteMsg drops the references of Cert's account to Hashes, signed by
// its device over (DeleteLabel, relay peer ID, Time, Hashes).
type deleteMsg struct {
	Hashes [][32]byte
	Cert   []byte
	Time   int64
	Sig    []byte
}

func deleteSigned(relay string, timeMs int64, hashes [][32]byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(relay)))
	b = append(b, relay...)
	b = binary.BigEndian.AppendUint64(b, uint64(timeMs))
	for _, h := range hashes {
		b = append(b, h[:]...)
	}
	return b
}

type dataMsg struct {
	Size uint64
	Data []byte
}

type haveMsg struct{ Index []int }

type statusMsg struct {
	Code Code
	Text string
}

func (m *putMsg) appendBody(b []byte) []byte {
	b = protoframe.AppendBytes(b, fHash, m.Hash[:])
	b = protoframe.AppendBytes(b, fTokenHash, m.TokenHash[:])
	b = protoframe.AppendBytes(b, fCert, m.Cert)
	b = protoframe.AppendVarint(b, fTime, uint64(m.Time))
	b = protoframe.AppendBytes(b, fSig, m.Sig)
	return protoframe.AppendBytes(b, fData, m.Data)
}

func (m *getMsg) appendBody(b []byte) []byte {
	b = protoframe.AppendBytes(b, fHash, m.Hash[:])
	b = protoframe.AppendBytes(b, fToken, m.Token[:])
	b = protoframe.AppendVarint(b, fOffset, m.Offset)
	return protoframe.AppendVarint(b, fLength, m.Length)
}

func (m *hasMsg) appendBody(b []byte) []byte {
	b = protoframe.AppendBytes(b, fToken, m.Token[:])
	for _, h := range m.Hashes {
		b = protoframe.AppendBytes(b, fHash, h[:])
	}
	return b
}

func (m *deleteMsg) appendBody(b []byte) []byte {
	for _, h := range m.Hashes {
		b = protoframe.AppendBytes(b, fHash, h[:])
	}
	b = protoframe.AppendBytes(b, fCert, m.Cert)
	b = protoframe.AppendVarint(b, fTime, uint64(m.Time))
	return protoframe.AppendBytes(b, fSig, m.Sig)
}

// prefix is the body up to the data's bytes (so the data is written
// without a copy).
func (m *dataMsg) prefix() []byte {
	b := protoframe.AppendVarint(nil, fSize, m.Size)
	b = protowire.AppendTag(b, fData, protowire.BytesType)
	return protowire.AppendVarint(b, uint64(len(m.Data)))
}

func (m *haveMsg) appendBody(b []byte) []byte {
	for _, i := range m.Index {
		b = protoframe.AppendVarint(b, fIndex, uint64(i))
	}
	return b
}

func (m *statusMsg) appendBody(b []byte) []byte {
	b = protoframe.AppendVarint(b, fCode, uint64(m.Code))
	if t := m.Text; t != "" {
		if len(t) > maxText {
			t = t[:maxText]
		}
		b = protoframe.AppendBytes(b, fText, []byte(t))
	}
	return b
}

func fixed32(dst []byte, v []byte, what string) error {
	if len(v) != 32 {
		return fmt.Errorf("%w: %s of %d bytes", protoframe.ErrMalformed, what, len(v))
	}
	copy(dst, v)
	return nil
}

func malformed(what string) error { return fmt.Errorf("%w: %s", protoframe.ErrMalformed, what) }

func decodePut(b []byte) (*putMsg, error) {
	m := &putMsg{}
	var seen uint8
	err := protoframe.Fields(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == fHash && typ == protowire.BytesType:
			seen |= 1
			return fixed32(m.Hash[:], v, "hash")
		case num == fTokenHash && typ == protowire.BytesType:
			seen |= 2
			return fixed32(m.TokenHash[:], v, "token hash")
		case num == fCert && typ == protowire.BytesType:
			m.Cert = v
		case num == fTime && typ == protowire.VarintType:
			m.Time = int64(x)
		case num == fSig && typ == protowire.BytesType:
			m.Sig = v
		case num == fData && typ == protowire.BytesType:
			if len(v) > MaxBlob {
				return fmt.Errorf("%w: a blob of %d bytes (at most %d)", protoframe.ErrTooLarge, len(v), MaxBlob)
			}
			m.Data = v
		}
		return nil
	})
	if err == nil && seen != 3 {
		err = malformed("a Put without hash or token hash")
	}
	return m, err
}

func decodeGet(b []byte) (*getMsg, error) {
	m := &getMsg{}
	var seen uint8
	err := protoframe.Fields(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == fHash && typ == protowire.BytesType:
			seen |= 1
			return fixed32(m.Hash[:], v, "hash")
		case num == fToken && typ == protowire.BytesType:
			seen |= 2
			return fixed32(m.Token[:], v, "token")
		case num == fOffset && typ == protowire.VarintType:
			m.Offset = x
		case num == fLength && typ == protowire.VarintType:
			m.Length = x
		}
		return nil
	})
	if err == nil && seen != 3 {
		err = malformed("a Get without hash or token")
	}
	return m, err
}

func decodeHashes(b []byte, token *Token, cert, sig *[]byte, timeMs *int64) ([][32]byte, error) {
	var hashes [][32]byte
	var hasToken bool
	err := protoframe.Fields(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == fHash && typ == protowire.BytesType:
			if len(hashes) >= MaxHashes {
				return malformed(fmt.Sprintf("more than %d hashes", MaxHashes))
			}
			var h [32]byte
			if err := fixed32(h[:], v, "hash"); err != nil {
				return err
			}
			hashes = append(hashes, h)
		case num == fToken && typ == protowire.BytesType && token != nil:
			hasToken = true
			return fixed32(token[:], v, "token")
		case num == fCert && typ == protowire.BytesType && cert != nil:
			*cert = v
		case num == fSig && typ == protowire.BytesType && sig != nil:
			*sig = v
		case num == fTime && typ == protowire.VarintType && timeMs != nil:
			*timeMs = int64(x)
		}
		return nil
	})
	if err == nil && token != nil && !hasToken {
		err = malformed("no token")
	}
	return hashes, err
}

func decodeHas(b []byte) (*hasMsg, error) {
	m := &hasMsg{}
	var err error
	m.Hashes, err = decodeHashes(b, &m.Token, nil, nil, nil)
	return m, err
}

func decodeDelete(b []byte) (*deleteMsg, error) {
	m := &deleteMsg{}
	var err error
	m.Hashes, err = decodeHashes(b, nil, &m.Cert, &m.Sig, &m.Time)
	return m, err
}

func decodeData(b []byte) (*dataMsg, error) {
	m := &dataMsg{}
	err := protoframe.Fields(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == fSize && typ == protowire.VarintType:
			m.Size = x
		case num == fData && typ == protowire.BytesType:
			m.Data = v
		}
		return nil
	})
	return m, err
}

func decodeHave(b []byte, n int) (*haveMsg, error) {
	m := &haveMsg{}
	err := protoframe.Fields(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		if num == fIndex && typ == protowire.VarintType {
			if x >= uint64(n) || len(m.Index) >= n {
				return malformed(fmt.Sprintf("index %d of %d", x, n))
			}
			m.Index = append(m.Index, int(x))
		}
		return nil
	})
	return m, err
}

func decodeStatus(b []byte) (*statusMsg, error) {
	m := &statusMsg{}
	err := protoframe.Fields(b, func(num protowire.Number, typ protowire.Type, v []byte, x uint64) error {
		switch {
		case num == fCode && typ == protowire.VarintType:
			m.Code = Code(x)
		case num == fText && typ == protowire.BytesType:
			if len(v) > maxText {
				v = v[:maxText]
			}
			m.Text = string(v)
		}
		return nil
	})
	return m, err
}
