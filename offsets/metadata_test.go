package offsets

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// K3, M8: the record of finished offsets and the user's metadata round-trip.
func TestMetadataRoundTrip(t *testing.T) {
	many := make([]int64, 0, 2000)
	for o := int64(1001); o < 5001; o += 2 {
		many = append(many, o)
	}
	tests := []struct {
		name     string
		user     string
		next     int64
		finished []int64
		raw      bool // the metadata is the user's string unchanged
		kind     byte
	}{
		{name: "nothing finished: the user's metadata as it is", user: "cursor=7", next: 10, raw: true},
		{name: "nothing at all", next: 0, raw: true},
		{name: "runs", user: "u", next: 100, finished: []int64{101, 102, 103, 200, 201}, kind: kindRuns},
		{name: "alternating offsets: a bitmap is shorter", next: 1000, finished: many, kind: kindBitmap},
		{name: "user metadata that looks like a record", user: "~f1abc~def", next: 5, kind: kindRuns},
		{name: "user metadata with the separator", user: "a~b~c", next: 5, finished: []int64{9}, kind: kindBitmap},
		{name: "far offsets", next: 1 << 40, finished: []int64{1<<40 + 1, 1<<40 + 900000}, kind: kindRuns},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := EncodeMetadata(tt.user, tt.next, tt.finished)
			if err != nil {
				t.Fatal(err)
			}
			if tt.raw != (s == tt.user) {
				t.Fatalf("encoded %q: raw = %v, want %v", s, s == tt.user, tt.raw)
			}
			if !tt.raw {
				bin, _ := b64.DecodeString(s[len(metaPrefix) : strings.IndexByte(s[len(metaPrefix):], metaSep)+len(metaPrefix)])
				if bin[0] != tt.kind {
					t.Errorf("kind %q, want %q", bin[0], tt.kind)
				}
			}
			user, finished, err := DecodeMetadata(s, tt.next)
			if err != nil {
				t.Fatal(err)
			}
			if user != tt.user || !slices.Equal(finished, tt.finished) {
				t.Fatalf("decoded %q %v, want %q %v", user, finished, tt.user, tt.finished)
			}
		})
	}
}

// K4: a record that would not fit is refused, never truncated.
func TestMetadataTooLarge(t *testing.T) {
	var scattered []int64
	for o := int64(10); o < 200000; o += 7 {
		scattered = append(scattered, o)
	}
	if _, err := EncodeMetadata("", 0, scattered); !errors.Is(err, ErrMetadataTooLarge) {
		t.Fatalf("err = %v, want ErrMetadataTooLarge", err)
	}
	if _, err := EncodeMetadata(strings.Repeat("x", MaxMetadata+1), 0, nil); !errors.Is(err, ErrMetadataTooLarge) {
		t.Fatalf("err = %v, want ErrMetadataTooLarge for oversized user metadata", err)
	}
}

// K4: whatever finishes inside MaxSpan, the record fits.
func TestMaxSpanAlwaysFits(t *testing.T) {
	for _, user := range []string{"", "cursor", strings.Repeat("m", 3000), strings.Repeat("m", 4090)} {
		span := MaxSpan(user)
		if len(user) < 3000 && span < 20000 {
			t.Errorf("MaxSpan(%d bytes) = %d, want room for 20,000 offsets", len(user), span)
		}
		if span < 2 {
			continue
		}
		// The worst case: every other offset of the span finished.
		var finished []int64
		for o := int64(1); o < span; o += 2 {
			finished = append(finished, 50+o)
		}
		s, err := EncodeMetadata(user, 50, finished)
		if err != nil || len(s) > MaxMetadata {
			t.Errorf("user %d bytes, span %d: len %d, err %v", len(user), span, len(s), err)
		}
	}
}

func TestMetadataRefusesBadInput(t *testing.T) {
	if _, err := EncodeMetadata("", 10, []int64{10}); err == nil {
		t.Error("encoded the committed offset itself as finished")
	}
	if _, err := EncodeMetadata("", 10, []int64{12, 11}); err == nil {
		t.Error("encoded decreasing offsets")
	}
	for _, s := range []string{"~f1", "~f1!!~", "~f1~x", "~f1" + b64.EncodeToString([]byte{'r', 5}) + "~"} {
		user, finished, err := DecodeMetadata(s, 0)
		if err == nil || user != s || finished != nil {
			t.Errorf("DecodeMetadata(%q) = %q, %v, %v; want the whole string back with an error", s, user, finished, err)
		}
	}
}
