package offsets

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// MaxMetadata is the longest commit metadata Kafka accepts by default
// (the broker's offset.metadata.max.bytes, 4096).
const MaxMetadata = 4096

// ErrMetadataTooLarge is returned by EncodeMetadata when the record would be
// longer than MaxMetadata (K4).
var ErrMetadataTooLarge = errors.New("offsets: commit metadata would exceed 4096 bytes")

// The record of finished offsets travels in the commit's metadata string:
//
//	~f1<base64url of the finished set>~<the user's own metadata>
//
// where the finished set, relative to the committed offset, is either
//
//	'r' uvarint(runs) { uvarint(gap) uvarint(length-1) }   runs of finished offsets
//	'b' uvarint(bits) bitmap (bit i, least significant first, is offset+i)
//
// whichever is shorter. Gaps count from the end of the previous run (the
// committed offset for the first). The "1" is the format's version. With
// nothing finished above the committed offset the metadata is the user's
// string unchanged, so tools and sequential consumers read it as before.
const (
	metaPrefix = "~f1"
	metaSep    = '~'
	kindRuns   = 'r'
	kindBitmap = 'b'
	// maxDecoded bounds what a (possibly foreign or corrupt) record may
	// expand to.
	maxDecoded = 1 << 20
)

var b64 = base64.RawURLEncoding

// EncodeMetadata builds the commit metadata for committed position next,
// the offsets finished above it (strictly increasing, all above next) and
// the user's own metadata. It fails with ErrMetadataTooLarge past
// MaxMetadata.
func EncodeMetadata(user string, next int64, finished []int64) (string, error) {
	if len(finished) == 0 && !strings.HasPrefix(user, metaPrefix) {
		if len(user) > MaxMetadata {
			return "", ErrMetadataTooLarge
		}
		return user, nil
	}
	prev := next
	for _, o := range finished {
		if o <= prev {
			return "", fmt.Errorf("offsets: finished offsets must increase and be above %d", next)
		}
		prev = o
	}
	bin := encodeRuns(next, finished)
	if len(finished) > 0 {
		if bm := encodeBitmap(next, finished); bm != nil && len(bm) < len(bin) {
			bin = bm
		}
	}
	n := len(metaPrefix) + b64.EncodedLen(len(bin)) + 1 + len(user)
	if n > MaxMetadata {
		return "", ErrMetadataTooLarge
	}
	var sb strings.Builder
	sb.Grow(n)
	sb.WriteString(metaPrefix)
	sb.WriteString(b64.EncodeToString(bin))
	sb.WriteByte(metaSep)
	sb.WriteString(user)
	return sb.String(), nil
}

func encodeRuns(next int64, finished []int64) []byte {
	var runs [][2]uint64
	end := next // exclusive end of the previous run
	for i := 0; i < len(finished); {
		j := i + 1
		for j < len(finished) && finished[j] == finished[j-1]+1 {
			j++
		}
		runs = append(runs, [2]uint64{uint64(finished[i] - end), uint64(j - i - 1)})
		end = finished[j-1] + 1
		i = j
	}
	out := []byte{kindRuns}
	out = binary.AppendUvarint(out, uint64(len(runs)))
	for _, r := range runs {
		out = binary.AppendUvarint(out, r[0])
		out = binary.AppendUvarint(out, r[1])
	}
	return out
}

func encodeBitmap(next int64, finished []int64) []byte {
	bits := uint64(finished[len(finished)-1] - next + 1)
	if bits > maxDecoded {
		return nil // never shorter than the runs here; see EncodeMetadata
	}
	out := []byte{kindBitmap}
	out = binary.AppendUvarint(out, bits)
	head := len(out)
	out = append(out, make([]byte, (bits+7)/8)...)
	for _, o := range finished {
		i := o - next
		out[head+int(i/8)] |= 1 << (i % 8)
	}
	return out
}

// DecodeMetadata splits commit metadata written by EncodeMetadata for
// committed position next into the user's metadata and the finished
// offsets. Metadata in any other form is the user's alone. A record that
// looks like ferry's but is corrupt is returned whole as the user's
// metadata, with an error.
func DecodeMetadata(s string, next int64) (user string, finished []int64, err error) {
	if !strings.HasPrefix(s, metaPrefix) {
		return s, nil, nil
	}
	rest := s[len(metaPrefix):]
	sep := strings.IndexByte(rest, metaSep)
	if sep < 0 {
		return s, nil, errors.New("offsets: commit metadata record without separator")
	}
	bin, err := b64.DecodeString(rest[:sep])
	if err != nil {
		return s, nil, fmt.Errorf("offsets: commit metadata record: %w", err)
	}
	if len(bin) == 0 {
		return s, nil, errors.New("offsets: empty commit metadata record")
	}
	switch bin[0] {
	case kindRuns:
		finished, err = decodeRuns(bin[1:], next)
	case kindBitmap:
		finished, err = decodeBitmap(bin[1:], next)
	default:
		err = fmt.Errorf("offsets: unknown commit metadata record kind %q", bin[0])
	}
	if err != nil {
		return s, nil, err
	}
	return rest[sep+1:], finished, nil
}

var errCorrupt = errors.New("offsets: corrupt commit metadata record")

func decodeRuns(b []byte, next int64) ([]int64, error) {
	n, k := binary.Uvarint(b)
	if k <= 0 || n > uint64(len(b)) {
		return nil, errCorrupt
	}
	b = b[k:]
	var out []int64
	end := next
	for range n {
		gap, k1 := binary.Uvarint(b)
		if k1 <= 0 {
			return nil, errCorrupt
		}
		length, k2 := binary.Uvarint(b[k1:])
		if k2 <= 0 {
			return nil, errCorrupt
		}
		b = b[k1+k2:]
		length++
		// Runs are maximal and lie above next: every gap is at least 1.
		if gap == 0 || gap > maxDecoded || length > maxDecoded || uint64(len(out))+length > maxDecoded ||
			end > (1<<62)-int64(gap)-int64(length) {
			return nil, errCorrupt
		}
		start := end + int64(gap)
		for o := start; o < start+int64(length); o++ {
			out = append(out, o)
		}
		end = start + int64(length)
	}
	if len(b) != 0 {
		return nil, errCorrupt
	}
	return out, nil
}

func decodeBitmap(b []byte, next int64) ([]int64, error) {
	bits, k := binary.Uvarint(b)
	if k <= 0 || bits == 0 || bits > maxDecoded || uint64(len(b)-k) != (bits+7)/8 || next > (1<<62) {
		return nil, errCorrupt
	}
	b = b[k:]
	var out []int64
	for i := range bits {
		if b[i/8]&(1<<(i%8)) != 0 {
			out = append(out, next+int64(i))
		}
	}
	if len(out) == 0 || out[0] == next || out[len(out)-1] != next+int64(bits)-1 {
		return nil, errCorrupt
	}
	return out, nil
}

// MaxSpan is how many offsets past the committed position a window may
// reach and still be described within MaxMetadata next to the user's
// metadata, whatever finishes: the size of a bitmap of that many offsets.
// A partition stops taking new messages at that distance (K4).
func MaxSpan(user string) int64 {
	room := MaxMetadata - len(metaPrefix) - 1 - len(user)
	bytes := b64.DecodedLen(room) - 1 - binary.MaxVarintLen64
	if bytes <= 0 {
		return 0
	}
	return int64(bytes) * 8
}
