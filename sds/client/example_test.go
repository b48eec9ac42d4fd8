package client_test

import (
	"context"
	"fmt"
	"time"

	"github.com/signet-mesh/signet/sds/client"
)

func ExampleClient() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	c := client.New(client.Config{SocketPath: "/run/signet/agent.sock"})
	go func() { _ = c.Run(ctx) }()

	ready, done := context.WithTimeout(ctx, 10*time.Second)
	defer done()
	if err := c.WaitReady(ready); err != nil {
		fmt.Println(err)
		return
	}
	cert, roots, _ := c.Current()
	fmt.Println(cert.Leaf.URIs[0], roots != nil)
}
