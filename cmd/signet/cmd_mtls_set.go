package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

type mtlsSetOptions struct {
	admin                  adminOptions
	output                 outputOption
	mode, spiffeID, prefix string
	port                   string
	exemptPorts            []string
	preview, shadow, force bool
}

func (o *mtlsSetOptions) addFlags(cmd *cobra.Command, env *cliEnv) {
	fs := cmd.Flags()
	o.admin.addFlags(fs, env)
	o.output.addFlags(cmd, objectFormats)
	fs.StringVar(&o.mode, "mode", "", "STRICT (mTLS only), PERMISSIVE (mTLS and plaintext) or DISABLE (plaintext)")
	cmd.RegisterFlagCompletionFunc("mode", cobra.FixedCompletions(mtlsModes, cobra.ShellCompDirectiveNoFileComp))
	fs.StringVar(&o.spiffeID, "spiffe-id", "", "scope: one workload")
	fs.StringVar(&o.prefix, "prefix", "", "scope: the SPIFFE IDs under this path prefix (spiffe://TD/PATH/)")
	fs.StringVar(&o.port, "port", "", "only connections to this port (default: every port)")
	fs.StringArrayVar(&o.exemptPorts, "exempt-port", nil, "`port` that passes plaintext in every mode (health checks), repeatable")
	fs.BoolVar(&o.preview, "dry-run", false, "install nothing: print, per workload, the connections the policy would refuse over the last window")
	fs.BoolVar(&o.shadow, "shadow", false, "with STRICT: install it in dry run, letting through, counting and logging what STRICT would refuse")
	fs.BoolVar(&o.force, "force", false, "apply even though workloads in scope received plaintext recently")
}

func newMTLSSetCommand(env *cliEnv) *cobra.Command {
	var o mtlsSetOptions
	cmd := &cobra.Command{
		Use:   "set --mode STRICT|PERMISSIVE|DISABLE [--spiffe-id ID | --prefix spiffe://TD/PATH/] [--port N]",
		Short: "set the mode of the trust domain, a SPIFFE ID prefix or a SPIFFE ID",
		Long: `Set an mTLS policy. Without --spiffe-id or --prefix it is the trust domain's
default. STRICT is refused while a workload in scope still received plaintext
over the last window, naming it, unless --force.

--dry-run installs nothing and prints what the policy would refuse, from the
connection counts the agents already report. --shadow installs STRICT in dry
run: connections STRICT would refuse pass, and are counted and logged.`,
		Example: `  signet mtls set --mode STRICT --prefix spiffe://example.org/prod/ --dry-run
  signet mtls set --mode STRICT --prefix spiffe://example.org/prod/ --shadow
  signet mtls set --mode STRICT --prefix spiffe://example.org/prod/
  signet mtls set --mode PERMISSIVE --spiffe-id spiffe://example.org/web --port 8443
  signet mtls set --mode STRICT --exempt-port 15021 --force`,
		Args: cli.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), env) },
	}
	o.addFlags(cmd, env)
	return cmd
}

func (o *mtlsSetOptions) run(ctx context.Context, env *cliEnv) error {
	if o.mode == "" {
		return errors.New("--mode is required: STRICT, PERMISSIVE or DISABLE")
	}
	mode, err := modeFromName(o.mode)
	if err != nil {
		return err
	}
	if o.spiffeID != "" && o.prefix != "" {
		return errors.New("--spiffe-id and --prefix are exclusive: a policy has one scope (neither sets the trust-domain default)")
	}
	p := &adminv1.MTLSPolicy{SpiffeId: o.spiffeID, Prefix: o.prefix, Mode: mode, DryRun: o.shadow}
	if o.port != "" {
		if p.Port, err = portFlag("port", o.port); err != nil {
			return err
		}
	}
	for _, e := range o.exemptPorts {
		n, err := portFlag("exempt-port", e)
		if err != nil {
			return err
		}
		p.ExemptPorts = append(p.ExemptPorts, n)
	}
	if o.shadow && mode != adminv1.MTLSMode_MTLS_MODE_STRICT {
		return errors.New("--shadow goes with --mode STRICT: it lets through what STRICT would refuse")
	}
	resp, err := adminCall(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.SetMTLSPolicyResponse, error) {
		return c.SetMTLSPolicy(ctx, &adminv1.SetMTLSPolicyRequest{Policy: p, Force: o.force, Preview: o.preview})
	})
	if err != nil {
		return err
	}
	if o.preview {
		return o.printPreview(ctx, env, resp)
	}
	if len(resp.PlaintextWorkloads) > 0 {
		fmt.Fprintf(env.stderr, "warning: forced over workloads that received plaintext recently; their plaintext clients are now refused: %s\n",
			strings.Join(resp.PlaintextWorkloads, ", "))
	}
	out := policyToJSON(resp.Policy)
	out.PlaintextWorkloads = resp.PlaintextWorkloads
	if o.output.json() {
		return printJSON(env.stdout, out)
	}
	return printTable(env.stdout, policyHeader, [][]string{policyRow(out)})
}

// mtlsPreviewJSON is the -o json shape of `mtls set --dry-run`.
type mtlsPreviewJSON struct {
	Preview bool           `json:"preview"`
	Policy  mtlsPolicyJSON `json:"policy"`
	// WouldRefuse holds every workload in scope whose mode would change,
	// with its counts over the window; refused_connections is what the
	// policy would have refused.
	WouldRefuse []mtlsStatusJSON `json:"would_refuse"`
}

func (o *mtlsSetOptions) printPreview(ctx context.Context, env *cliEnv, resp *adminv1.SetMTLSPolicyResponse) error {
	if !resp.Preview {
		// A server that predates previews ignores the request's preview
		// field and installs the policy: say so, and how to undo it.
		id := resp.GetPolicy().GetId()
		return fmt.Errorf("the CA at %s does not support --dry-run and INSTALLED the policy %s; remove it with: signet mtls delete %s", o.admin.socket, id, id)
	}
	// The window the counts cover, for the reader; the preview is
	// complete without it.
	var window int64
	if st, err := adminCall(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.GetMTLSStatusResponse, error) {
		return c.GetMTLSStatus(ctx, &adminv1.GetMTLSStatusRequest{})
	}); err == nil {
		window = st.WindowSeconds
	}
	out := mtlsPreviewJSON{Preview: true, Policy: policyToJSON(resp.Policy), WouldRefuse: []mtlsStatusJSON{}}
	rows := [][]string{}
	for _, w := range resp.WouldRefuse {
		s := statusToJSON(w, window)
		out.WouldRefuse = append(out.WouldRefuse, s)
		rows = append(rows, []string{s.SPIFFEID, statusMode(s), strconv.FormatInt(s.MTLSConnections, 10), strconv.FormatInt(s.PlaintextConnections, 10),
			strconv.FormatInt(s.RefusedConnections, 10), strings.Join(s.PlaintextSources, ",")})
	}
	if o.output.json() {
		return printJSON(env.stdout, out)
	}
	scope := policyRow(out.Policy)[1]
	over := "over the server's window"
	if window > 0 {
		over = "over the last " + (time.Duration(window) * time.Second).String()
	}
	fmt.Fprintf(env.stdout, "preview of %s on %s (nothing was installed); connection counts %s\n\n", out.Policy.Mode, scope, over)
	if len(rows) == 0 {
		fmt.Fprintln(env.stdout, "no workload in scope would change mode")
		return nil
	}
	return printTable(env.stdout, []string{"SPIFFE ID", "MODE AFTER", "MTLS", "PLAINTEXT", "WOULD REFUSE", "PLAINTEXT FROM"}, rows)
}
