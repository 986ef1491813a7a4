package storage

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
)

// slogAdapter implements badger.Logger on top of slog. A nil logger discards.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) log(level slog.Level, format string, args []any) {
	if a.l == nil || !a.l.Enabled(context.Background(), level) {
		return
	}
	msg := strings.TrimRight(fmt.Sprintf(format, args...), "\n")
	a.l.Log(context.Background(), level, msg, "component", "badger")
}

func (a slogAdapter) Errorf(format string, args ...any) { a.log(slog.LevelError, format, args) }

func (a slogAdapter) Warningf(format string, args ...any) { a.log(slog.LevelWarn, format, args) }

func (a slogAdapter) Infof(format string, args ...any) { a.log(slog.LevelInfo, format, args) }

func (a slogAdapter) Debugf(format string, args ...any) { a.log(slog.LevelDebug, format, args) }
