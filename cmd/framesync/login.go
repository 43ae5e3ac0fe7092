package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"framesync/peer"
)

func newLoginCmd() *cobra.Command {
	var cfg clientConfig
	var user string
	c := &cobra.Command{
		Use:   "login --user NAME",
		Short: "Log in to a hub with access control and keep the token in the local replica",
		Long: `Log in to --hub as --user. The password comes from FRAMESYNC_PASSWORD, or
is asked for on the terminal, or read as one line from standard input. The
token is kept in the replica directory (file mode 0600); every client
command then uses it until it expires or 'framesync logout'.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if user == "" {
				return usageError{errors.New("--user is required")}
			}
			pw, err := password(cmd.InOrStdin(), cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			rp, err := peer.Open(cfg.Cache, cfg.Hub)
			if err != nil {
				return err
			}
			res, err := rp.Login(cmd.Context(), user, pw)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "logged in to %s as %s until %s\n", cfg.Hub, res.User, res.Expires.Local().Format(time.DateTime))
			return nil
		},
	}
	addClientFlags(c, &cfg)
	c.Flags().StringVar(&user, "user", envOr("FRAMESYNC_USER", ""), "user name (env FRAMESYNC_USER)")
	return c
}

// password reads the password: environment, terminal, or a stdin line.
func password(stdin io.Reader, prompt io.Writer) (string, error) {
	if pw, ok := os.LookupEnv("FRAMESYNC_PASSWORD"); ok {
		return pw, nil
	}
	if f, ok := stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprint(prompt, "password: ")
		b, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(prompt)
		return string(b), err
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", usageError{errors.New("no password: set FRAMESYNC_PASSWORD or pipe it on standard input")}
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func newLogoutCmd() *cobra.Command {
	var cfg clientConfig
	c := &cobra.Command{
		Use:   "logout",
		Short: "Revoke and forget the token of --hub",
		RunE: func(cmd *cobra.Command, _ []string) error {
			return cfg.withClient(cmd.Context(), func(c *peer.Client) error {
				return c.Logout(cmd.Context())
			})
		},
	}
	addClientFlags(c, &cfg)
	return c
}
