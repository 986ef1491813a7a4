package storage

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// slogAdapter implements badger.Logger on top of slog. A nil logger
// discards.
//
// Badger's Info lines (tables opened, discard stats, the per-level summary
// it prints on close) say nothing an operator or user can act on, so they
// go out at Debug: a daemon logging at Info sees only Badger's warnings and
// errors. A warning or error of several lines (Badger prints level tables
// and compaction dumps that way) becomes one record holding its first
// line and the number of lines left out; the whole text follows at Debug.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if a.l == nil || !a.l.Enabled(ctx, level) {
		return
	}
	msg := strings.TrimSpace(fmt.Sprintf(format, args...))
	first, rest, multi := strings.Cut(msg, "\n")
	if !multi || level <= slog.LevelDebug {
		a.l.Log(ctx, level, msg, "component", "badger")
		return
	}
	a.l.Log(ctx, level, strings.TrimSpace(first), "component", "badger", "more_lines", strings.Count(rest, "\n")+1)
	a.l.Log(ctx, slog.LevelDebug, "badger: full text of the previous record", "component", "badger", "text", msg)
}

func (a slogAdapter) Errorf(format string, args ...any) { a.log(slog.LevelError, format, args) }

func (a slogAdapter) Warningf(format string, args ...any) { a.log(slog.LevelWarn, format, args) }

// Infof logs at Debug (see slogAdapter).
func (a slogAdapter) Infof(format string, args ...any) { a.log(slog.LevelDebug, format, args) }

func (a slogAdapter) Debugf(format string, args ...any) { a.log(slog.LevelDebug, format, args) }
