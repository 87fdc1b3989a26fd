package engine

import (
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// partitionList logs a set of topic partitions as "orders[0 1 2] payments[3]":
// topics sorted by name, partitions in increasing order — not as Go's map
// syntax.
type partitionList map[string][]int32

func (l partitionList) String() string {
	var b strings.Builder
	for i, topic := range slices.Sorted(maps.Keys(l)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(topic)
		b.WriteByte('[')
		for j, p := range slices.Sorted(slices.Values(l[topic])) {
			if j > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(strconv.Itoa(int(p)))
		}
		b.WriteByte(']')
	}
	return b.String()
}

// LogValue implements slog.LogValuer.
func (l partitionList) LogValue() slog.Value { return slog.StringValue(l.String()) }
