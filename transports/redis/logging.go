package redis

import (
	"context"
	"fmt"
	"log/slog"
)

// GoRedisLogger adapts a *slog.Logger to go-redis's logger, for programs
// that want go-redis's own log lines in their structured log:
//
//	goredis.SetLogger(redis.GoRedisLogger(logger))
//
// Why the driver does not do this itself: kombu-go logs everything it
// decides through the logger given to kombu.Dial (kombu.WithLogger), with
// structured attributes, and prints nothing. go-redis, underneath, writes a
// few lines of its own (a failed sentinel lookup, a pool that could not
// reconnect, cluster slot moves) through one logger for the whole process,
// a package variable set with its SetLogger, by default to stderr; its
// lines do not say which client wrote them, and many are written with no
// context at all, so they cannot be routed to the connection whose logger
// should get them. Setting that variable from Dial would change the
// logging of every go-redis client in the program, the user's own
// included, and the last connection dialled would win: global state
// leaking into the user's program. So the driver leaves go-redis's logger
// alone, and the program, which owns the process, decides: keep the
// default (stderr), route it into its slog with this adapter, or silence it
// with goredis.SetLogger(redis.GoRedisLogger(slog.New(slog.DiscardHandler))).
//
// Each line is logged at Warn level (go-redis logs only what went wrong or
// changed), with the message go-redis formatted and the attribute
// "component"="go-redis"; the context go-redis passes, when it has one,
// goes to the slog handler.
func GoRedisLogger(l *slog.Logger) interface {
	Printf(ctx context.Context, format string, v ...any)
} {
	return goRedisLogger{l}
}

type goRedisLogger struct{ l *slog.Logger }

func (g goRedisLogger) Printf(ctx context.Context, format string, v ...any) {
	if ctx == nil {
		ctx = context.Background()
	}
	if !g.l.Enabled(ctx, slog.LevelWarn) {
		return
	}
	g.l.WarnContext(ctx, fmt.Sprintf(format, v...), "component", "go-redis")
}
