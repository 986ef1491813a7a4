package relay

import (
	"context"
	"log/slog"
)

// quietHandler passes records at min and above to h. The relay gives it
// to Badger, whose Info lines (tables opened, level summaries on close)
// mean nothing to an operator; with the relay's logger at Debug, all of
// Badger's lines pass.
type quietHandler struct {
	h   slog.Handler
	min slog.Level
}

func quieter(l *slog.Logger, min slog.Level) *slog.Logger {
	if l.Enabled(context.Background(), slog.LevelDebug) {
		return l
	}
	return slog.New(quietHandler{l.Handler(), min})
}

func (q quietHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= q.min && q.h.Enabled(ctx, level)
}

func (q quietHandler) Handle(ctx context.Context, r slog.Record) error { return q.h.Handle(ctx, r) }

func (q quietHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return quietHandler{q.h.WithAttrs(attrs), q.min}
}

func (q quietHandler) WithGroup(name string) slog.Handler {
	return quietHandler{q.h.WithGroup(name), q.min}
}
