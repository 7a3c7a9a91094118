package daemon

import (
	"context"
	"fmt"

	"go.uber.org/zap"
)

// redisLog routes go-redis's own messages (failed dials, pool and pub/sub
// trouble) into the daemon's structured log, so that every line on stderr
// stays one JSON object while Redis is down.
type redisLog struct{ log *zap.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.log.Warn(fmt.Sprintf(format, v...))
}
