package engine

import (
	"context"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kgoLogger passes franz-go's own log lines to the app's logger. franz-go
// logs every request at its info level and much more at debug, so its
// levels move one step down: errors and warnings stay what they are, info
// becomes debug, and debug goes below slog's debug (shown only by a
// handler set to slog.LevelDebug-4 or lower).
type kgoLogger struct{ log *slog.Logger }

func newKgoLogger(log *slog.Logger) kgoLogger {
	return kgoLogger{log.With("source", "franz-go")}
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
	k.log.Log(context.Background(), slogLevel(level), "franz-go: "+msg, keyvals...)
}
