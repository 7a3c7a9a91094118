package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/abusemilter/abusemilter/internal/cli"
	"github.com/abusemilter/abusemilter/internal/config"
	"github.com/abusemilter/abusemilter/internal/console"
)

// userOptions are the options of "abusectl user".
type userOptions struct {
	Action       string // add, passwd, remove, list
	Name         string
	Role         string
	UsersFile    string
	PasswordFile string
	JSON         bool

	configPath string
	lookup     config.Lookup
	// stdin is where a password is read when no --password-file is given;
	// stdinTerminal says whether to prompt (without echo) or read a line.
	stdin         io.Reader
	stdinTerminal bool
	readSecret    func() (string, error)
	prompt        io.Writer
}

var userActions = []string{"add", "passwd", "remove", "list"}

func newUserCommand(g *globalOptions) *cobra.Command {
	o := userOptions{Role: string(console.RoleViewer)}
	cmd := &cobra.Command{
		Use:   "user add NAME [--role viewer|operator] | passwd NAME | remove NAME | list [--json]",
		Short: "manage the console's users: add, change a password, remove, list",
		Long: `Manages the users of the abuse desk console ("abusectl serve") in the
users file (console.users_file in the config, or --users-file): one
"name:role:bcrypt-hash" line each, written atomically with mode 0600. A
viewer sees every page; an operator also acts. A running console reads the
file again on its next request: a removed user or a changed role ends that
user's sessions.

The password is read from --password-file, or from standard input: with a
prompt and no echo on a terminal (twice), else one line. It is never a
command-line argument. At least ` + fmt.Sprint(console.MinPasswordLength) + ` characters.`,
		Example: `  abusectl user add alice --role operator
  abusectl user add bob --password-file /run/secrets/bob
  abusectl user passwd alice
  abusectl user remove bob
  abusectl user list`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 0:
				return cli.Usagef("user needs add, passwd, remove or list")
			case args[0] == "list" && len(args) == 1:
			case (args[0] == "add" || args[0] == "passwd" || args[0] == "remove") && len(args) == 2:
			case args[0] == "list":
				return cli.Usagef("user list takes no further arguments")
			case args[0] == "add" || args[0] == "passwd" || args[0] == "remove":
				return cli.Usagef("user %s takes one NAME", args[0])
			default:
				return cli.Usagef("user %q: want add, passwd, remove or list", args[0])
			}
			return nil
		},
		ValidArgsFunction: func(_ *cobra.Command, args []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
			if len(args) > 0 {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var out []cobra.Completion
			for _, a := range userActions {
				if strings.HasPrefix(a, toComplete) {
					out = append(out, a)
				}
			}
			return out, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			o.Action = args[0]
			if len(args) == 2 {
				o.Name = args[1]
			}
			o.configPath, o.lookup = g.ConfigPath, g.deps.lookup
			if o.stdin == nil {
				o.stdin = cmd.InOrStdin()
				if f, ok := o.stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
					o.stdinTerminal = true
					o.readSecret = func() (string, error) {
						b, err := term.ReadPassword(int(f.Fd()))
						return string(b), err
					}
				}
			}
			o.prompt = cmd.ErrOrStderr()
			return commandError(runUser(cmd.Context(), o, cmd.OutOrStdout()))
		},
	}
	cmd.Flags().StringVar(&o.Role, "role", o.Role, "the role of a new user: viewer or operator (add)")
	cmd.Flags().StringVar(&o.UsersFile, "users-file", "", "the users file (default console.users_file of the config, "+config.DefaultConsoleUsersFile+")")
	cmd.Flags().StringVar(&o.PasswordFile, "password-file", "", "read the new password from this file (add, passwd)")
	cmd.Flags().BoolVar(&o.JSON, "json", false, "print JSON (list)")
	must(cmd.RegisterFlagCompletionFunc("role", cobra.FixedCompletions([]string{"viewer", "operator"}, cobra.ShellCompDirectiveNoFileComp)))
	must(cmd.MarkFlagFilename("users-file"))
	must(cmd.MarkFlagFilename("password-file"))
	return cmd
}

// usersFilePath is --users-file, else the config's console.users_file
// (the config is read when given or present; the store is not needed),
// else the default.
func usersFilePath(o userOptions) (string, error) {
	if o.UsersFile != "" {
		return o.UsersFile, nil
	}
	src := config.Resolve(o.configPath, o.lookup)
	if src.How == config.FromBuiltIn {
		return config.DefaultConsoleUsersFile, nil
	}
	cfg, err := src.Load()
	if err != nil {
		return "", configError(err)
	}
	return cfg.Console.UsersFile, nil
}

// userListJSON is the --json output of user list (no hashes).
type userListJSON struct {
	Users []userJSON `json:"users"`
}

type userJSON struct {
	Name string `json:"name"`
	Role string `json:"role"`
}

func runUser(_ context.Context, o userOptions, out io.Writer) error {
	path, err := usersFilePath(o)
	if err != nil {
		return err
	}
	if o.Action != "list" {
		if err := console.ValidUserName(o.Name); err != nil {
			return cli.Usagef("%v", err)
		}
	}
	users, err := console.ReadUsers(path)
	if err != nil {
		return configError(err)
	}
	idx := -1
	for i, u := range users {
		if u.Name == o.Name {
			idx = i
		}
	}
	switch o.Action {
	case "list":
		v := userListJSON{Users: []userJSON{}}
		for _, u := range users {
			v.Users = append(v.Users, userJSON{Name: u.Name, Role: string(u.Role)})
		}
		if o.JSON {
			return writeJSON(out, v)
		}
		if len(users) == 0 {
			_, err := fmt.Fprintf(out, "no console user in %s\n", path)
			return err
		}
		var t table
		t.header("USER", "ROLE")
		for _, u := range v.Users {
			t.add(plain, u.Name, u.Role)
		}
		return t.write(out, "", false)
	case "add":
		role, err := console.ParseRole(o.Role)
		if err != nil {
			return cli.Usagef("--role: %v", err)
		}
		if idx >= 0 {
			return cli.Exit(exitFailed, fmt.Errorf("user %s exists already (change the password with passwd, the role by remove and add)", o.Name))
		}
		hash, err := newPassword(o)
		if err != nil {
			return err
		}
		users = append(users, console.User{Name: o.Name, Role: role, Hash: hash})
		if err := console.WriteUsers(path, users); err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "added %s (%s) to %s\n", o.Name, role, path)
		return err
	case "passwd":
		if idx < 0 {
			return &notFoundError{fmt.Sprintf("no user %s in %s", o.Name, path)}
		}
		hash, err := newPassword(o)
		if err != nil {
			return err
		}
		users[idx].Hash = hash
		if err := console.WriteUsers(path, users); err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "changed the password of %s\n", o.Name)
		return err
	case "remove":
		if idx < 0 {
			return &notFoundError{fmt.Sprintf("no user %s in %s", o.Name, path)}
		}
		users = append(users[:idx], users[idx+1:]...)
		if err := console.WriteUsers(path, users); err != nil {
			return err
		}
		_, err = fmt.Fprintf(out, "removed %s from %s\n", o.Name, path)
		return err
	}
	return cli.Usagef("user %q: want add, passwd, remove or list", o.Action)
}

// newPassword reads a new password (a file, a terminal prompt twice, or a
// line of standard input) and hashes it.
func newPassword(o userOptions) ([]byte, error) {
	var pw string
	switch {
	case o.PasswordFile != "":
		b, err := os.ReadFile(o.PasswordFile)
		if err != nil {
			return nil, configError(fmt.Errorf("--password-file: %w", err))
		}
		pw = strings.TrimRight(string(b), "\r\n")
	case o.stdinTerminal && o.readSecret != nil:
		fmt.Fprintf(o.prompt, "password for %s: ", o.Name)
		a, err := o.readSecret()
		fmt.Fprintln(o.prompt)
		if err != nil {
			return nil, err
		}
		fmt.Fprint(o.prompt, "again: ")
		b, err := o.readSecret()
		fmt.Fprintln(o.prompt)
		if err != nil {
			return nil, err
		}
		if a != b {
			return nil, cli.Usagef("the passwords differ")
		}
		pw = a
	default:
		line, err := bufio.NewReader(o.stdin).ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		pw = strings.TrimRight(line, "\r\n")
	}
	hash, err := console.HashPassword(pw)
	if err != nil {
		return nil, cli.Usagef("%v", err)
	}
	return hash, nil
}
