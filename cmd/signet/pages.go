package main

import (
	"context"
	"errors"

	"github.com/spf13/pflag"

	adminv1 "github.com/signet-mesh/signet/proto/signet/admin/v1"
)

// pageOptions is the --page-size flag of the list commands: how many
// items each request asks the CA for. The command follows the pages
// itself and prints one list.
type pageOptions struct {
	size int32
}

func (p *pageOptions) addFlags(fs *pflag.FlagSet) {
	fs.Int32Var(&p.size, "page-size", 0, "items per request to the CA, at most 10000 (0: the CA's default, 1000); every page is fetched")
}

// paged is a list response.
type paged interface {
	GetNextPageToken() string
}

// adminPages makes call for each page, from the first (token "") until
// the CA returns no next token, over one connection, each call bounded
// by adminCallTimeout, and merges every page into the first with merge.
func adminPages[R paged](ctx context.Context, a *adminOptions, call func(ctx context.Context, c adminv1.AdminServiceClient, token string) (R, error), merge func(all, page R)) (R, error) {
	var zero R
	client, closeFn, err := a.dial()
	if err != nil {
		return zero, err
	}
	defer closeFn()
	var all R
	for first, token := true, ""; ; first = false {
		cctx, cancel := context.WithTimeout(ctx, adminCallTimeout)
		page, err := call(cctx, client, token)
		cancel()
		if err != nil {
			return zero, a.rpcError(err)
		}
		if first {
			all = page
		} else {
			merge(all, page)
		}
		next := page.GetNextPageToken()
		switch {
		case next == "":
			return all, nil
		case next == token:
			return zero, errors.New("the CA returned the same page token twice; listing stopped")
		}
		token = next
	}
}
