// Package lease holds the hub's locks: leases on a target of a room
// ("trajectory", "frame:<id>", "presenter") with a time to live, renewable,
// each grant carrying a fencing token that grows per room and is not
// reused, not even across restarts (see below for the limits with Redis).
//
// Backend is what the hub needs. Memory is the embedded in-process
// backend; Redis is the backend for several hubs sharing one Redis server.
// Both have the same semantics and pass the same conformance suite
// (leasetest.Run), so Backend takes and returns plain values only. Both
// report lease events (Subscribe): Acquired, Renewed, Released, Expired.
//
// A fencing token protects against a paused holder: a commit names the
// token it was made under, and Check refuses it once the lease has expired
// or been granted to someone else, however late the commit arrives. A
// lease is a lease, not a mutex: a holder can always outlive it (a pause,
// a slow network), so correctness comes from checking the token (and the
// base version) when the commit is applied, never from the timeout.
//
// # Redis
//
// A lease is a key room:<room>:lock:<target> holding "<token> <nonce>
// <holder>" (the nonce is 128 random bits, so every grant's value is
// unique), created with SET NX PXAT and ended by Redis itself at its
// expiry, whether or not any hub is alive. Renew and Release are Lua
// scripts that compare holder and token before PEXPIREAT or DEL; Check and
// Get read the key, so Redis alone decides whether a lease is live. The
// token is the room's counter room:<room>:token plus one, in the same
// script as the SET. Every key starts with a prefix (RedisOptions.Prefix);
// redis.go lists them all.
//
// Events: each script that changes a lease publishes the change, with a
// sequence number, on the channel <prefix>events, atomically with the
// change; every hub subscribes and so hears about every hub's grants. A
// hub whose subscription broke, or that sees a gap in the sequence numbers,
// takes a snapshot of the live leases and reports the difference to what
// it knew (leases gone as Expired, new ones as Acquired), so subscribers
// never keep a lock that no longer exists, and then goes on from the
// snapshot's sequence number without duplicates.
//
// Expiry: Redis deletes an expired key silently, so every lease is also in
// a sorted set by expiry time. Each hub looks at it when the earliest
// lease it knows of is due, and at least every ReapInterval, with a script
// that ends the due leases whose keys are gone and publishes Expired for
// each; the script is atomic, so each expiry is reported once, by
// whichever hub looks first, and leases of a dead hub are reported by the
// others. Keyspace notifications were not used: they need server
// configuration, carry no value, fire only when Redis gets round to
// deleting the key, and are lost while a subscriber is disconnected.
//
// Fencing tokens and the floor: a Redis restart without persistence (or a
// failover to a replica that missed writes, or eviction) loses the
// counters. So each hub keeps a floor per room, at least every token it
// granted or saw in an event, and the acquire script grants max(counter,
// floor)+1. With a TokenStore the floor is durable: before granting a
// token above its reserved mark a hub reserves a block of tokens in the
// store (the script answers "reserve first" instead of granting), and it
// also persists the tokens it sees other hubs grant. When a room has no
// counter in Redis (a new room, or Redis lost it) the script answers
// "reload first", and the hub raises its floor to the mark in the store,
// which is at or above every token it granted or saw (it reserves in
// blocks, so usually well above). A hub that restarts, with or without
// Redis, starts from its persisted mark.
//
// What this guarantees, with one Redis server (or one primary), and what
// it does not:
//
//   - While Redis keeps its data, at most one live lease per target, and
//     tokens per room strictly increase across all hubs.
//   - After Redis loses its data, every lease is gone at once (renewals get
//     PreconditionFailed, commits are refused by Check, subscribers get
//     Expired), and the room's counter restarts above the store's mark of
//     the first hub to lock in the room: no token it granted or saw before
//     is granted again. Without a TokenStore that holds only while the hub
//     keeps running. With one TokenStore per hub (FileTokens in each hub's
//     data directory), a token another hub granted that this hub had not
//     yet heard of (the pub/sub delay, or all of them for a hub that was
//     not running) and that is above its reserved block
//     can be granted again. Hubs sharing one TokenStore whose Reserve only
//     ever raises the mark, across processes, close that gap: every token
//     is reserved in it before it is granted. BlobTokens is such a store,
//     in the blob store the hubs share (the hub uses it with Redis);
//     FileTokens is not.
//   - No Redlock and no guarantee across failover: with asynchronous
//     replication a promoted replica may not have a lease that was granted,
//     and grant it again (the Redis documentation says as much). Fencing
//     plus the base-version check at commit is what keeps data safe.
//   - Clocks: Redis expires keys by its wall clock, which is not monotonic;
//     a jump of the Redis host's clock ends leases early (forward) or late
//     (backward). Grant.Expires is on Redis's clock (TIME); the TTL runs
//     from when the script ran, so a holder counting from when it sent the
//     request is on the safe side. Hub clocks matter only for what clients
//     are shown.
//   - Redis must not evict keys (maxmemory-policy noeviction): an evicted
//     lock ends a lease early, an evicted counter is like a restart.
//   - The scripts build key names themselves: one Redis server, not Redis
//     Cluster. SET ... PXAT needs Redis 6.2 or later.
//
// Redis unreachable: every operation, reads included, fails within
// RedisOptions.Timeout with a framesync.Unavailable error (a refused
// connection fails at once); Redis.Ping reports the same, also while the
// event subscription is down. An operation that timed out may still have
// happened: acquiring again is harmless (the holder re-acquires and keeps
// its token), and a lease whose release was lost ends by its TTL. The
// backend recovers by itself once Redis answers again, within the retry
// back-off cap (maxRetryWait, one second): connections are redialled, the subscription is renewed and
// reconciled, and expired leases are reported.
package lease
