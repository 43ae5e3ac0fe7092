package blobstore

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"framesync"
)

// Environment variables that Open reads, through its env argument, for an
// s3:// location without credentials.
const (
	EnvAccessKey    = "AWS_ACCESS_KEY_ID"
	EnvSecretKey    = "AWS_SECRET_ACCESS_KEY"
	EnvSessionToken = "AWS_SESSION_TOKEN"
)

// Open opens the store at loc, which is one of:
//
//	/path/to/dir or ./dir           a Dir (OpenDir)
//	file:///path/to/dir             a Dir; the host must be empty or localhost
//	s3://ACCESS:SECRET@HOST[:PORT]/BUCKET[/PREFIX][?secure=false&region=R]
//	                                an S3 store (OpenS3)
//
// In an s3:// URL, secure=false talks plain http (default: https) and
// region names the bucket's region (default: ask the server). Characters
// of the keys outside letters, digits and -._~ must be percent-encoded
// (a "/" in a secret key as %2F). Without ACCESS:SECRET@, the credentials
// come from env(EnvAccessKey), env(EnvSecretKey) and env(EnvSessionToken):
// main passes os.Getenv; nil means no environment. Errors about loc are
// BadInput errors that say what is wrong and never contain the secret key.
func Open(ctx context.Context, loc string, env func(key string) string) (Store, error) {
	if loc == "" {
		return nil, openError("", "empty location: want a directory, file:///dir or s3://…")
	}
	scheme, _, ok := strings.Cut(loc, "://")
	if !ok {
		if l := strings.ToLower(loc); strings.HasPrefix(l, "s3:") || strings.HasPrefix(l, "file:") {
			return nil, openError("", "a URL needs \"://\": want file:///dir or s3://…")
		}
		return openDir(loc)
	}
	switch strings.ToLower(scheme) {
	case "file":
		dir, err := parseFileURL(loc)
		if err != nil {
			return nil, err
		}
		return openDir(dir)
	case "s3":
		cfg, err := ParseS3URL(loc, env)
		if err != nil {
			return nil, err
		}
		s, err := OpenS3(ctx, cfg)
		if err != nil {
			return nil, err // not a Store holding a nil *S3
		}
		return s, nil
	}
	return nil, openError("", fmt.Sprintf("unknown scheme %q: want a directory, file:///dir or s3://…", scheme))
}

// openDir is OpenDir returning a Store, nil on error.
func openDir(dir string) (Store, error) {
	d, err := OpenDir(dir)
	if err != nil {
		return nil, err
	}
	return d, nil
}

// openError returns the BadInput error for a bad location (redacted).
func openError(loc, msg string) error {
	if loc != "" {
		msg = loc + ": " + msg
	}
	return &framesync.Error{Kind: framesync.BadInput, Op: "blobstore: open", Msg: msg}
}

// parseFileURL returns the directory of a file:// URL.
func parseFileURL(loc string) (string, error) {
	u, err := url.Parse(loc)
	if err != nil {
		return "", openError("", fmt.Sprintf("bad file URL: %v", unwrapURLError(err)))
	}
	switch {
	case u.Host != "" && u.Host != "localhost":
		return "", openError(u.Redacted(), fmt.Sprintf("host %q: a file URL names a local directory (file:///path)", u.Host))
	case u.User != nil:
		return "", openError(u.Redacted(), "a file URL takes no user")
	case u.RawQuery != "" || u.Fragment != "":
		return "", openError(u.Redacted(), "a file URL takes no query or fragment")
	case u.Path == "":
		return "", openError(u.Redacted(), "no path: want file:///path/to/dir")
	}
	return u.Path, nil
}

// ParseS3URL returns the configuration described by an s3:// URL (see
// Open), taking the credentials from env if the URL has none. It does not
// contact the server.
func ParseS3URL(loc string, env func(key string) string) (S3Config, error) {
	u, err := url.Parse(loc)
	if err != nil {
		return S3Config{}, openError("", fmt.Sprintf("bad s3 URL: %v", unwrapURLError(err)))
	}
	where := u.Redacted()
	bad := func(msg string) (S3Config, error) { return S3Config{}, openError(where, msg) }
	if u.Scheme != "s3" {
		return bad("not an s3:// URL")
	}
	if u.Host == "" {
		return bad("no host: want s3://ACCESS:SECRET@HOST[:PORT]/BUCKET[/PREFIX]")
	}
	if u.Hostname() == "" {
		return bad(fmt.Sprintf("bad host %q", u.Host))
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return bad(fmt.Sprintf("bad port %q", p))
		}
	}
	if u.Fragment != "" {
		return bad("an s3 URL takes no fragment")
	}
	cfg := S3Config{Endpoint: u.Host}
	path := strings.TrimPrefix(u.Path, "/")
	bucket, prefix, _ := strings.Cut(path, "/")
	if bucket == "" {
		return bad("no bucket: want s3://HOST[:PORT]/BUCKET[/PREFIX]")
	}
	cfg.Bucket = bucket
	cfg.Prefix = strings.TrimSuffix(prefix, "/")

	query, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return bad(fmt.Sprintf("bad query: %v", err))
	}
	known := []string{"secure", "region"}
	for k, vs := range query {
		if !slices.Contains(known, k) {
			return bad(fmt.Sprintf("unknown parameter %q (known: secure, region)", k))
		}
		if len(vs) != 1 {
			return bad(fmt.Sprintf("parameter %q given %d times", k, len(vs)))
		}
	}
	if v, ok := query["secure"]; ok {
		secure, err := strconv.ParseBool(v[0])
		if err != nil {
			return bad(fmt.Sprintf("secure=%q: want true or false", v[0]))
		}
		cfg.PlainHTTP = !secure
	}
	if v, ok := query["region"]; ok {
		if v[0] == "" {
			return bad("empty region")
		}
		cfg.Region = v[0]
	}

	if u.User != nil {
		secret, hasSecret := u.User.Password()
		cfg.AccessKey, cfg.SecretKey = u.User.Username(), secret
		switch {
		case cfg.AccessKey == "":
			return bad("credentials without an access key: want ACCESS:SECRET@")
		case !hasSecret || secret == "":
			return bad("access key without a secret key: want ACCESS:SECRET@")
		}
	} else {
		get := func(k string) string {
			if env == nil {
				return ""
			}
			return env(k)
		}
		cfg.AccessKey, cfg.SecretKey, cfg.SessionToken = get(EnvAccessKey), get(EnvSecretKey), get(EnvSessionToken)
		switch {
		case cfg.AccessKey == "" && cfg.SecretKey == "":
			return bad(fmt.Sprintf("no credentials: put ACCESS:SECRET@ in the URL or set %s and %s", EnvAccessKey, EnvSecretKey))
		case cfg.AccessKey == "":
			return bad(fmt.Sprintf("%s is set but %s is not", EnvSecretKey, EnvAccessKey))
		case cfg.SecretKey == "":
			return bad(fmt.Sprintf("%s is set but %s is not", EnvAccessKey, EnvSecretKey))
		}
	}
	if err := cfg.validate(); err != nil {
		var fe *framesync.Error
		if errors.As(err, &fe) {
			return S3Config{}, openError(where, fe.Field+": "+fe.Msg)
		}
		return S3Config{}, err
	}
	return cfg, nil
}

// unwrapURLError returns the cause of a url.Parse error, without the URL
// (which may hold a secret key).
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
