package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/signet-mesh/signet/ca/store/etcdstore/etcdtest"
)

// TestStoreMigrate: a server runs on bbolt with an agent, entries and
// tokens; migrate refuses its store while it runs, copies it once it is
// stopped, and refuses to copy into the prefix again. The same server
// then runs on etcd (same data dir and address): its agent goes on with
// the identity it had, entries and tokens are those of before, a new
// entry is served, and the one audit chain verifies. A second replica on
// a fresh data dir (another machine) signs under the migrated root, whose
// key it finds in the store.
func TestStoreMigrate(t *testing.T) {
	signetBinary(t)
	t.Parallel()
	s := startServer(t)
	a := startAgentTB(t, s, "node-a")
	a.entryFor(t, "spiffe://example.org/before")
	fetchUntil(t, a, 30*time.Second, hasOnly("spiffe://example.org/before"))
	s.cli(t, "token", "create", "--node-name", "unused")
	s.cli(t, "mtls", "set", "--mode", "PERMISSIVE", "--prefix", "spiffe://example.org/prod/")
	entries := s.cli(t, "entry", "list", "-o", "json")
	tokens := s.cli(t, "token", "list", "-o", "json")
	bundle := s.cli(t, "bundle", "show")

	cluster := etcdtest.New(t, 1)
	endpoints := strings.Join(cluster.Endpoints(), ",")
	migrate := []string{"store", "migrate", "--from", "bolt:" + s.dataDir(), "--to", "etcd:" + endpoints, "--etcd-prefix", "/migrated"}
	if res := s.run(t, migrate...); res.code == 0 || !strings.Contains(res.stderr, "a running server holds the store: stop it first") {
		t.Fatalf("migrate of a running server's store: exit %d, stderr %q; want a refusal", res.code, res.stderr)
	}
	s.stop()
	out := s.cli(t, migrate...)
	t.Logf("migrate:\n%s", out)
	for _, want := range []string{"entries 1,", "nodes 1,", "join tokens 2,", "mtls policies 1,", "root keys shared 1", "chain verified"} {
		if !strings.Contains(out, want) {
			t.Errorf("migrate output lacks %q:\n%s", want, out)
		}
	}
	if res := s.run(t, migrate...); res.code == 0 || !strings.Contains(res.stderr, "already holds a store") {
		t.Errorf("a second migrate into the prefix: exit %d, stderr %q; want a refusal", res.code, res.stderr)
	}

	etcdFlags := []string{"--store", "etcd", "--etcd-endpoints", endpoints, "--etcd-prefix", "/migrated"}
	s.restart(t, append(etcdFlags, "--server-name", "r1")...)
	for _, c := range []struct{ what, before string }{
		{"entry list", entries}, {"token list", tokens}, {"bundle show", bundle},
	} {
		args := strings.Fields(c.what)
		if c.what != "bundle show" {
			args = append(args, "-o", "json")
		}
		if got := s.cli(t, args...); got != c.before {
			t.Errorf("%s on etcd:\n%s\nwant, as on bbolt:\n%s", c.what, got, c.before)
		}
	}
	a.entryFor(t, "spiffe://example.org/after")
	fetchUntil(t, a, 30*time.Second, hasOnly("spiffe://example.org/before", "spiffe://example.org/after"))

	r2 := unstartedServer(t)
	r2.restart(t, append(etcdFlags, "--server-name", "r2")...)
	if got := r2.cli(t, "bundle", "show"); got != bundle {
		t.Errorf("the second replica serves another bundle:\n%s\nwant:\n%s", got, bundle)
	}
	if out := r2.cli(t, "audit", "verify"); !strings.HasPrefix(out, "OK: ") {
		t.Errorf("audit verify through the second replica: %q", out)
	}
}
