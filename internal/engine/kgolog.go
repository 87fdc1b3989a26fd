package engine

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kgoLogger passes franz-go's own log lines to the app's logger. franz-go
// logs every request at its info level and much more at debug, so its
// levels move one step down: errors and warnings stay what they are, info
// becomes debug, and debug goes below slog's debug (shown only by a
// handler set to slog.LevelDebug-4 or lower). The app's logger already
// names the group, so franz-go's own group key is left out when it names
// the same group.
type kgoLogger struct {
	log   *slog.Logger
	group string
}

func newKgoLogger(log *slog.Logger, group string) kgoLogger {
	return kgoLogger{log.With("source", "franz-go"), group}
}

func slogLevel(l kgo.LogLevel) slog.Level {
	switch l {
	case kgo.LogLevelError:
		return slog.LevelError
	case kgo.LogLevelWarn:
		return slog.LevelWarn
	case kgo.LogLevelInfo:
		return slog.LevelDebug
	}
	return slog.LevelDebug - 4
}

// Level is the most verbose level the app's logger would show; kgo asks
// before building each line.
func (k kgoLogger) Level() kgo.LogLevel {
	ctx := context.Background()
	for _, l := range []kgo.LogLevel{kgo.LogLevelDebug, kgo.LogLevelInfo, kgo.LogLevelWarn, kgo.LogLevelError} {
		if k.log.Enabled(ctx, slogLevel(l)) {
			return l
		}
	}
	return kgo.LogLevelNone
}

func (k kgoLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	kept := make([]any, 0, len(keyvals))
	for i := 0; i+1 < len(keyvals); i += 2 {
		key, val := keyvals[i], keyvals[i+1]
		if key == "group" && val == k.group {
			continue
		}
		if v := reflect.ValueOf(val); v.Kind() == reflect.Map {
			val = readableMap(v)
		}
		kept = append(kept, key, val)
	}
	if len(keyvals)%2 == 1 {
		kept = append(kept, keyvals[len(keyvals)-1])
	}
	k.log.Log(context.Background(), slogLevel(level), "franz-go: "+msg, kept...)
}

// readableMap renders a map franz-go logs (say, an assignment
// map[string][]int32) the way ferry's own lines do — "orders[0 1 2]
// payments[3]", keys in order — instead of Go's map syntax.
func readableMap(m reflect.Value) string {
	if m.Len() == 0 {
		return "none"
	}
	keys := m.MapKeys()
	slices.SortFunc(keys, func(a, b reflect.Value) int {
		if a.CanInt() && b.CanInt() {
			return cmp.Compare(a.Int(), b.Int())
		}
		return cmp.Compare(fmt.Sprint(a), fmt.Sprint(b))
	})
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		v := m.MapIndex(k)
		switch v.Kind() {
		case reflect.Map:
			parts = append(parts, fmt.Sprintf("%v[%s]", k, readableMap(v)))
		case reflect.Slice, reflect.Array:
			elems := make([]string, v.Len())
			for i := range elems {
				elems[i] = fmt.Sprint(v.Index(i))
			}
			parts = append(parts, fmt.Sprintf("%v[%s]", k, strings.Join(elems, " ")))
		default:
			parts = append(parts, fmt.Sprintf("%v=%+v", k, v))
		}
	}
	return strings.Join(parts, " ")
}
