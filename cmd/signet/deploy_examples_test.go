package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	"sigs.k8s.io/yaml"
)

// TestKubernetesExampleProxyArgs: every `signet proxy` sidecar in
// deploy/kubernetes/examples is a command line the real command tree
// accepts, its --inbound and --outbound values are what the proxy's own
// parser takes, and it finds the agent socket the DaemonSet serves
// (deploy/deploy_test.go checks the rest of those manifests).
func TestKubernetesExampleProxyArgs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(deployDir, "kubernetes", "examples", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	found := 0
	for _, f := range files {
		for i, doc := range yamlDocuments(t, f) {
			var d struct {
				Kind string `json:"kind"`
				Spec struct {
					Template struct {
						Spec struct {
							Containers []struct {
								Name string   `json:"name"`
								Args []string `json:"args"`
								Env  []struct {
									Name  string `json:"name"`
									Value string `json:"value"`
								} `json:"env"`
							} `json:"containers"`
						} `json:"spec"`
					} `json:"template"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal(doc, &d); err != nil {
				t.Fatalf("%s document %d: %v", f, i, err)
			}
			if d.Kind != "Deployment" {
				continue
			}
			for _, c := range d.Spec.Template.Spec.Containers {
				if len(c.Args) == 0 || c.Args[0] != "proxy" {
					continue
				}
				found++
				t.Run(filepath.Base(f)+"/"+c.Name, func(t *testing.T) {
					if err := parseCommandLine(c.Args); err != nil {
						t.Fatalf("signet %s: %v", strings.Join(c.Args, " "), err)
					}
					env := map[string]string{}
					for _, e := range c.Env {
						env[e.Name] = e.Value
					}
					cmd := newProxyCommand(&cliEnv{getenv: mapEnv(env)})
					if err := cmd.ParseFlags(c.Args[1:]); err != nil {
						t.Fatal(err)
					}
					for _, name := range []string{"inbound", "outbound"} {
						values, err := cmd.Flags().GetStringArray(name)
						if err != nil {
							t.Fatal(err)
						}
						if _, err := parseListenPairs(name, values); err != nil {
							t.Error(err)
						}
					}
					socket, _ := cmd.Flags().GetString("socket")
					o := agentSocketOption{flag: socket, getenv: mapEnv(env)}
					if p, err := o.path(); err != nil || p != cli.DefaultAgentSocket {
						t.Errorf("the proxy dials %q (%v), want the agent socket %s", p, err, cli.DefaultAgentSocket)
					}
				})
			}
		}
	}
	if found < 2 {
		t.Fatalf("found %d signet proxy sidecars under %s/kubernetes/examples, want the PERMISSIVE and the STRICT one", found, deployDir)
	}
}
