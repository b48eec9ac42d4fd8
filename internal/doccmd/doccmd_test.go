package doccmd_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/signet-mesh/signet/internal/doccmd"
)

func TestExtract(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		want    []doccmd.Command
		wantErr string
	}{
		{
			name: "commands, comments, continuations, pipes and redirections",
			doc: "text\n```sh\nsignet entry list -o json   # a comment\n" +
				"signet entry create --spiffe-id spiffe://example.org/web \\\n    --selector 'unix:uid:1000'\n" +
				"export X=1 && SIGNET_ADMIN_SOCKET=\"/tmp/a b\" signet bundle show > bundle.pem\n" +
				"signet store backup --out - | gpg -e > x.gpg\n" +
				"go run ./cmd/signet dev\n" +
				"signet store backup --out /b/$(date +%F).db\n```\n",
			want: []doccmd.Command{
				{Line: 3, Raw: "signet entry list -o json", Args: []string{"entry", "list", "-o", "json"}},
				{Line: 4, Raw: "signet entry create --spiffe-id spiffe://example.org/web --selector 'unix:uid:1000'", Args: []string{"entry", "create", "--spiffe-id", "spiffe://example.org/web", "--selector", "unix:uid:1000"}},
				{Line: 6, Raw: "signet bundle show > bundle.pem", Args: []string{"bundle", "show"}, Stdout: "bundle.pem"},
				{Line: 7, Raw: "signet store backup --out -", Args: []string{"store", "backup", "--out", "-"}},
				{Line: 9, Raw: "signet store backup --out /b/$(date +%F).db", Args: []string{"store", "backup", "--out", "/b/$(date +%F).db"}},
			},
		},
		{
			name: "blocks that are not shell, and parse-only blocks",
			doc:  "```\nsignet: an error message\n```\n\n" + doccmd.ParseOnlyMarker + " (needs a host) -->\n\n```bash\nsignet root retire\n```\n```sh\nsignet version\n```\n",
			want: []doccmd.Command{
				{Line: 8, Raw: "signet root retire", Args: []string{"root", "retire"}, ParseOnly: true},
				{Line: 11, Raw: "signet version", Args: []string{"version"}},
			},
		},
		{name: "unterminated quote", doc: "```sh\nsignet entry show 'abc\n```\n", wantErr: "unterminated '"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := doccmd.Extract([]byte(tt.doc))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Extract: %v; want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Extract (-want +got):\n%s", diff)
			}
		})
	}
}
