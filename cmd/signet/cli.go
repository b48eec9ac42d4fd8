package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// Defaults shared by the commands.
const (
	defaultDataDir     = "./signet-data"
	defaultTrustDomain = "example.org"
	adminSocketEnv     = "SIGNET_ADMIN_SOCKET"
	adminSocketName    = "admin.sock"
	agentSocketName    = "agent.sock"
)

// newFlagSet returns a flag set that reports errors instead of exiting.
func newFlagSet(env *cliEnv, name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "Usage: %s\n\nFlags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args allowing flags before and after positional
// arguments ("entry show ID -o json" and "entry show -o json ID").
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, errUsagePrinted
			}
			return nil, errUsagePrinted
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
}

// exactArgs checks the number of positional arguments.
func exactArgs(fs *flag.FlagSet, args []string, names ...string) error {
	if len(args) != len(names) {
		fs.Usage()
		if len(names) == 0 {
			return fmt.Errorf("unexpected argument %q", args[0])
		}
		return fmt.Errorf("expected %d argument(s): %s; got %d", len(names), strings.Join(names, " "), len(args))
	}
	return nil
}

// adminFlags are the flags every operator command takes.
type adminFlags struct {
	socket string
	output string
}

func (a *adminFlags) register(fs *flag.FlagSet, env *cliEnv) {
	def := env.getenv(adminSocketEnv)
	if def == "" {
		def = defaultDataDir + "/" + adminSocketName
	}
	fs.StringVar(&a.socket, "admin-socket", def, "CA admin socket (env "+adminSocketEnv+")")
	fs.StringVar(&a.output, "o", "table", "output format: table or json")
	fs.StringVar(&a.output, "output", "table", "output format: table or json")
}

func (a *adminFlags) validate() error {
	switch a.output {
	case "table", "json":
		return nil
	}
	return fmt.Errorf("unknown output format %q: use table or json", a.output)
}

// dialAdmin connects to the admin socket. The connection is lazy; the first
// call reports an unreachable socket.
func (a *adminFlags) dial() (adminv1.AdminServiceClient, func(), error) {
	conn, err := grpc.NewClient("passthrough:///"+a.socket,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", a.socket)
		}),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("connecting to admin socket %s: %w", a.socket, err)
	}
	return adminv1.NewAdminServiceClient(conn), func() { conn.Close() }, nil
}

// callCtx bounds one admin call.
func callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, 30*time.Second)
}

// rpcError turns a gRPC status into the operator's error message.
func rpcError(a *adminFlags, err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	if strings.Contains(st.Message(), "connect:") || strings.Contains(st.Message(), "dial unix") {
		return fmt.Errorf("cannot reach the CA admin socket %s (set --admin-socket or %s): %s", a.socket, adminSocketEnv, st.Message())
	}
	return errors.New(st.Message())
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printTable writes rows under a header, aligned.
func printTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func unixTime(sec int64) string {
	if sec == 0 {
		return "-"
	}
	return time.Unix(sec, 0).UTC().Format(time.RFC3339)
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// adminCall dials the admin socket and makes one call, bounded by
// callCtx; a failure comes back as the operator's error message.
func adminCall[T any](ctx context.Context, af *adminFlags, call func(context.Context, adminv1.AdminServiceClient) (T, error)) (T, error) {
	var zero T
	client, closeFn, err := af.dial()
	if err != nil {
		return zero, err
	}
	defer closeFn()
	ctx, cancel := callCtx(ctx)
	defer cancel()
	resp, err := call(ctx, client)
	if err != nil {
		return zero, rpcError(af, err)
	}
	return resp, nil
}
