package peer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"framesync/relay/wire"
)

// tokenFile is where a replica keeps the login token, readable by its
// owner only.
const tokenFile = "token"

// Login logs in to the hub of replica rp and keeps the token in the
// replica directory (mode 0600), where Connect finds it.
func (rp *Replica) Login(ctx context.Context, user, password string) (*wire.LoginResponse, error) {
	c := &Client{hub: strings.TrimRight(rp.hub, "/"), http: defaultHTTP()}
	var res wire.LoginResponse
	if err := c.doJSON(ctx, "login", "POST", "/api/auth/login", wire.LoginRequest{Username: user, Password: password}, &res); err != nil {
		return nil, err
	}
	if err := rp.SetToken(res.Token); err != nil {
		return nil, err
	}
	return &res, nil
}

// SetToken stores token in the replica ("" removes it).
func (rp *Replica) SetToken(token string) error {
	path := filepath.Join(rp.dir, tokenFile)
	if token == "" {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := writeFileAtomic(path, []byte(token)); err != nil {
		return err
	}
	return os.Chmod(path, 0o600)
}

// Token returns the stored login token ("" if none).
func (rp *Replica) Token() string {
	b, err := os.ReadFile(filepath.Join(rp.dir, tokenFile))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// refreshBefore is how long before its expiry Connect renews a stored
// token.
const refreshBefore = 2 * time.Hour

// tokenExpiry reads the expiry a hub token carries ("fs1.<payload>.<sig>");
// zero if it cannot tell.
func tokenExpiry(tok string) time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 || parts[0] != "fs1" {
		return time.Time{}
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		Exp int64 `json:"exp"`
	}
	if err != nil || json.Unmarshal(b, &c) != nil {
		return time.Time{}
	}
	return time.Unix(c.Exp, 0)
}

// refresh swaps the stored token for a fresh one when it expires soon.
func (c *Client) refresh(ctx context.Context) {
	exp := tokenExpiry(c.opts.Token)
	if exp.IsZero() || time.Until(exp) > refreshBefore || c.opts.Token != c.rep.Token() {
		return
	}
	var res wire.LoginResponse
	if err := c.doJSON(ctx, "refresh token", "POST", "/api/auth/refresh", nil, &res); err != nil {
		c.log.Warn("token refresh failed", "err", err)
		return
	}
	if err := c.rep.SetToken(res.Token); err != nil {
		c.log.Warn("keep refreshed token", "err", err)
	}
	c.opts.Token = res.Token
}

// Logout revokes the client's token at the hub and forgets it.
func (c *Client) Logout(ctx context.Context) error {
	err := c.doJSON(ctx, "logout", "POST", "/api/auth/logout", nil, nil)
	if rerr := c.rep.SetToken(""); rerr != nil {
		return errors.Join(err, rerr)
	}
	if err != nil {
		return fmt.Errorf("the hub did not revoke the token (it was forgotten here): %w", err)
	}
	return nil
}
