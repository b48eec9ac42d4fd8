package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// maxDeleteIDs is the CA's limit on one bulk delete (api.MaxDeleteEntries):
// a file over it is refused before anything is sent, since all or nothing
// is one transaction.
const maxDeleteIDs = 10000

type entryDeleteOptions struct {
	admin adminOptions
	file  string
}

func newEntryDeleteCommand(env *cliEnv) *cobra.Command {
	var o entryDeleteOptions
	cmd := &cobra.Command{
		Use:   "delete ID | --file FILE",
		Short: "delete an entry, or every entry a file lists (all or nothing): agents stop serving their SVIDs",
		Example: `  signet entry delete 6b1f0c2e
  signet entry delete --file ids.txt          # one id per line; # comments
  signet entry list --parent-id spiffe://example.org/signet/agent/join_token/node1 -o json | signet entry delete --file -`,
		Args: optionalArg("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case len(args) == 1 && o.file == "":
				return o.run(cmd.Context(), env, args[0])
			case len(args) == 0 && o.file != "":
				return o.runFile(cmd.Context(), env)
			}
			return cli.UsageError(cmd, fmt.Errorf("give exactly one of an entry ID and --file"))
		},
	}
	o.admin.addFlags(cmd.Flags(), env)
	cmd.Flags().StringVar(&o.file, "file", "", "delete the entries whose ids this file lists, one per line or the JSON of 'entry list -o json' (- for stdin), in one transaction: all or none")
	return cmd
}

func (o *entryDeleteOptions) run(ctx context.Context, env *cliEnv, id string) error {
	if _, err := adminCall(ctx, &o.admin, func(ctx context.Context, c adminv1.AdminServiceClient) (*adminv1.DeleteEntryResponse, error) {
		return c.DeleteEntry(ctx, &adminv1.DeleteEntryRequest{Id: id})
	}); err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "deleted entry %s\n", id)
	return nil
}

func (o *entryDeleteOptions) runFile(ctx context.Context, env *cliEnv) error {
	name := o.file
	var data []byte
	var err error
	if o.file == "-" {
		name = "<stdin>"
		data, err = cli.ReadAllLimited(env.stdin, name, maxEntriesFile)
	} else {
		data, err = cli.ReadLimited(o.file, maxEntriesFile)
	}
	if err != nil {
		return fmt.Errorf("reading ids file: %w", err)
	}
	ids, err := parseIDsFile(name, data)
	if err != nil {
		return err
	}
	conn, err := o.admin.conn()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
	defer cancel()
	resp, err := adminv1.NewEntryBatchServiceClient(conn).DeleteEntries(ctx, &adminv1.DeleteEntriesRequest{Ids: ids})
	if err != nil {
		return o.admin.rpcError(err)
	}
	fmt.Fprintf(env.stderr, "deleted %d entries\n", resp.GetDeleted())
	return nil
}

// parseIDsFile reads entry ids: the JSON array 'entry list -o json'
// prints, or one id per line with blank lines and # comments skipped.
func parseIDsFile(name string, data []byte) ([]string, error) {
	var ids []string
	if t := bytes.TrimSpace(data); len(t) > 0 && t[0] == '[' {
		var list []struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(t, &list); err != nil {
			return nil, fmt.Errorf("%s: not a JSON list of entries: %v", name, err)
		}
		for i, e := range list {
			if e.ID == "" {
				return nil, fmt.Errorf("%s: entry %d has no id", name, i+1)
			}
			ids = append(ids, e.ID)
		}
	} else {
		for line := range strings.Lines(string(data)) {
			if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
				ids = append(ids, line)
			}
		}
	}
	switch {
	case len(ids) == 0:
		return nil, fmt.Errorf("%s: lists no entry ids", name)
	case len(ids) > maxDeleteIDs:
		return nil, fmt.Errorf("%s: lists %d ids, over the limit of %d per delete (all or nothing is one transaction): split the file", name, len(ids), maxDeleteIDs)
	}
	return ids, nil
}
