// Package lease holds the hub's locks: leases on a target of a room
// ("trajectory", "frame:<id>", "presenter") with a time to live, renewable,
// each grant carrying a fencing token that grows per room and is never
// reused, not even across restarts.
//
// Backend is what the hub needs; Memory is the embedded in-process backend.
// A Redis backend (SET NX PX, compare-and-renew and compare-and-delete in
// Lua, tokens from INCR) will implement the same interface with the same
// semantics, so Backend takes and returns plain values only.
//
// A fencing token protects against a paused holder: a commit names the
// token it was made under, and Check refuses it once the lease has expired
// or been granted to someone else, however late the commit arrives.
package lease
