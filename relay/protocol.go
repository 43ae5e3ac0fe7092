package relay

import (
	"time"

	"framesync/relay/wire"
)

func encodeMsg(m *wire.Msg) ([]byte, error) { return wire.Encode(m) }

func decodeMsg(b []byte) (*wire.Msg, error) { return wire.Decode(b) }

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}
