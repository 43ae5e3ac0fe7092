package lease

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"framesync"
	"framesync/blobstore"
)

// BlobTokens is a TokenStore for several hubs: the fencing token marks live
// in the blob store the hubs share, so every token any hub reserved is
// known to every hub, and a Redis that lost its counters restarts each
// room's counter above every token ever granted by any hub (the gap that
// per-hub files leave, see the package doc).
//
// Blobs are immutable, so the mark is not one value that is overwritten: a
// reservation is one small blob per block of blockSize tokens, whose
// content, and so address, follows from the room and the block number
// alone (ReservationBlob). Reserving block k stores its blob, which is
// idempotent, so hubs reserving at once never conflict and the mark can
// only rise. Blocks are reserved in order, each after the one below it is
// stored, so the stored blocks of a room are always 1..K; Load finds K by
// probing with Stat (doubling, then bisecting: a few Stats). A local
// TokenStore (FileTokens in the hub's data directory) remembers the last
// mark this hub knew, so probing starts there and the mark survives a blob
// store that was replaced by an empty one.
//
// A collector of unreferenced blobs must keep reservation blobs (they are
// referenced by no frame): blobstore.Collect's keep function can recognise
// them with IsReservation. framesync has no collector yet.
type BlobTokens struct {
	// Static after construction.
	local TokenStore
	blobs blobstore.Store

	mu      sync.Mutex       // guards inStore
	inStore map[string]int64 // highest block known to be stored, per room
}

var _ TokenStore = (*BlobTokens)(nil)

// blockSize is how many tokens one reservation blob covers.
const blockSize = tokenBlock

// blobTokensTimeout bounds one Load or Reserve against the blob store.
const blobTokensTimeout = 30 * time.Second

// NewBlobTokens returns a TokenStore keeping marks in blobs, with local
// as this hub's cache of them (nil for none).
func NewBlobTokens(blobs blobstore.Store, local TokenStore) *BlobTokens {
	return &BlobTokens{local: local, blobs: blobs, inStore: map[string]int64{}}
}

const reservationHeader = "framesync fencing token reservation\n"

// ReservationBlob is the content of the blob that reserves block k (tokens
// (k-1)*blockSize+1 to k*blockSize) of room.
func ReservationBlob(room string, k int64) []byte {
	return fmt.Appendf(nil, "%sroom %s\nblock %d of %d tokens\n", reservationHeader, room, k, blockSize)
}

// IsReservation reports whether content is a reservation blob.
func IsReservation(content []byte) bool {
	return strings.HasPrefix(string(content), reservationHeader)
}

func (b *BlobTokens) has(ctx context.Context, room string, k int64) (bool, error) {
	h := framesync.Sum(ReservationBlob(room, k))
	_, err := b.blobs.Stat(ctx, h)
	if errors.Is(err, blobstore.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Load implements TokenStore: the top of the highest reserved block, or
// the local mark if that is higher. A local mark above the stored blocks
// (a hub that kept its marks in files before, or a blob store that was
// replaced) is stored now, so the other hubs see it too.
func (b *BlobTokens) Load(room string) (int64, error) {
	if err := checkRoom(room); err != nil {
		return 0, err
	}
	var local int64
	if b.local != nil {
		m, err := b.local.Load(room)
		if err != nil {
			return 0, err
		}
		local = m
	}
	ctx, cancel := context.WithTimeout(context.Background(), blobTokensTimeout)
	defer cancel()
	b.mu.Lock()
	lo := b.inStore[room] // blocks 1..lo are stored (0: none known)
	b.mu.Unlock()
	step := int64(1)
	hi := int64(-1) // first block known to be missing
	for hi < 0 {
		ok, err := b.has(ctx, room, lo+step)
		if err != nil {
			return 0, b.failed("read", room, err)
		}
		if !ok {
			hi = lo + step
			break
		}
		lo += step
		step *= 2
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		ok, err := b.has(ctx, room, mid)
		if err != nil {
			return 0, b.failed("read", room, err)
		}
		if ok {
			lo = mid
		} else {
			hi = mid
		}
	}
	b.mu.Lock()
	b.inStore[room] = max(b.inStore[room], lo)
	b.mu.Unlock()
	if local > lo*blockSize {
		if err := b.store(ctx, room, local); err != nil {
			return 0, err
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inStore[room] * blockSize, nil // at least local: store covered it
}

// store stores the reservation blobs of every block above the stored ones
// up to the one holding upTo, in order.
func (b *BlobTokens) store(ctx context.Context, room string, upTo int64) error {
	b.mu.Lock()
	from := b.inStore[room] + 1
	b.mu.Unlock()
	top := (upTo + blockSize - 1) / blockSize
	for k := from; k <= top; k++ {
		if _, err := blobstore.PutBytes(ctx, b.blobs, ReservationBlob(room, k)); err != nil {
			return b.failed("store", room, err)
		}
		b.mu.Lock()
		b.inStore[room] = max(b.inStore[room], k)
		b.mu.Unlock()
	}
	return nil
}

// Reserve implements TokenStore: it stores the reservation blobs of every
// block up to the one holding upTo, in order, then the local mark.
func (b *BlobTokens) Reserve(room string, upTo int64) error {
	if err := checkRoom(room); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), blobTokensTimeout)
	defer cancel()
	if err := b.store(ctx, room, upTo); err != nil {
		return err
	}
	if b.local != nil {
		top := (upTo + blockSize - 1) / blockSize
		return b.local.Reserve(room, top*blockSize)
	}
	return nil
}

// Shared implements SharedStore: every hub's reservations are in it.
func (b *BlobTokens) Shared() bool { return true }

func (b *BlobTokens) failed(what, room string, err error) error {
	return &framesync.Error{Kind: framesync.Unavailable, Op: "fencing tokens", Msg: fmt.Sprintf("cannot %s the token reservations of room %q in the blob store", what, room), Err: err}
}
