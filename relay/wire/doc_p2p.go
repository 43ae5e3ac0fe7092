package wire

// Stream limits of our libp2p protocols, per remote peer, applied by the
// hub and by clients to their resource managers: far above what honest
// peers use (one sync stream per room, a few blob fetches at a time),
// far below go-libp2p's defaults for unknown protocols.
const (
	MaxDirectoryStreams = 16  // per peer, at the hub
	MaxSyncStreams      = 256 // per peer and direction: one per shared room
	MaxBlobStreams      = 32  // per peer and direction
)
