package peer

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"framesync/relay/wire"
)

// SetPresence tells the room's other members about this client (cursor,
// selection in progress, ...). Presence is ephemeral: not stored, not sent
// to members who join later. It needs the connection (ErrOffline without).
func (r *Room) SetPresence(payload map[string]any) error {
	return r.c.send(&wire.Msg{T: wire.MsgPresence, Room: r.name, Payload: payload, Sent: time.Now().UnixNano()})
}

// Presenter is the room's presenter token, held by this client: its frame
// messages drive what the other members show. It is renewed in the
// background until Release; the hub lets it expire a few seconds after
// renewals stop and writes the last step shown to the state document when
// presenting ends.
type Presenter struct {
	// Static after Present.
	r       *Room
	token   int64
	stop    chan struct{}
	done    chan struct{}
	lostCh  chan struct{}
	lostErr error // set before lostCh is closed

	once sync.Once
}

// Present takes the room's presenter token. If another member presents,
// the error is an *Error of kind framesync.Locked naming the holder.
func (r *Room) Present(ctx context.Context) (*Presenter, error) {
	m, err := r.c.request(ctx, &wire.Msg{T: wire.MsgPresent, Room: r.name})
	if err != nil {
		return nil, fmt.Errorf("present: %w", err)
	}
	ttl := time.Until(time.UnixMilli(m.Expires))
	if ttl <= 0 {
		ttl = time.Second
	}
	p := &Presenter{r: r, token: m.Token, stop: make(chan struct{}), done: make(chan struct{}), lostCh: make(chan struct{})}
	go p.renew(ttl / 3)
	return p, nil
}

func (p *Presenter) renew(every time.Duration) {
	defer close(p.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-p.r.c.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(p.r.c.ctx, every)
		_, err := p.r.c.request(ctx, &wire.Msg{T: wire.MsgPresent, Room: p.r.name})
		cancel()
		if err != nil {
			p.once.Do(func() {
				p.lostErr = fmt.Errorf("presenter renewal failed: %w", err)
				close(p.lostCh)
			})
			return
		}
	}
}

// Lost is closed when the token could not be renewed.
func (p *Presenter) Lost() <-chan struct{} { return p.lostCh }

// Err returns why the token was lost, nil while it is held.
func (p *Presenter) Err() error {
	select {
	case <-p.lostCh:
		return p.lostErr
	default:
		return nil
	}
}

// Show sends the room's members the frame to show: step is the frame
// index, payload anything else (camera, ...). The hub ignores it unless
// this client holds the token.
func (p *Presenter) Show(step int64, payload map[string]any) error {
	return p.r.c.send(&wire.Msg{T: wire.MsgFrame, Room: p.r.name, Step: &step, Payload: payload, Sent: time.Now().UnixNano()})
}

// Release gives the token up.
func (p *Presenter) Release(ctx context.Context) error {
	select {
	case <-p.stop:
		return nil
	default:
	}
	close(p.stop)
	<-p.done
	_, err := p.r.c.request(ctx, &wire.Msg{T: wire.MsgUnpresent, Room: p.r.name})
	return err
}

// msgpackOrJSON decodes a response body by its content type.
func msgpackOrJSON(resp *http.Response, out any) error {
	if strings.HasPrefix(resp.Header.Get("Content-Type"), wire.ContentMsgpack) {
		return msgpack.NewDecoder(resp.Body).Decode(out)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
