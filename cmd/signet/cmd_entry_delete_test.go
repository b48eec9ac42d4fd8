package main

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseIDsFile(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		want    []string
		wantErr string
	}{
		{name: "lines", data: "a\n\n# comment\n b \nc", want: []string{"a", "b", "c"}},
		{name: "entry list json", data: `[{"id":"a","spiffe_id":"spiffe://example.org/x"},{"id":"b"}]`, want: []string{"a", "b"}},
		{name: "empty", data: "# nothing\n", wantErr: "lists no entry ids"},
		{name: "json without id", data: `[{"spiffe_id":"x"}]`, wantErr: "entry 1 has no id"},
		{name: "bad json", data: `[{"id":`, wantErr: "not a JSON list of entries"},
		{name: "too many", data: strings.Repeat("x\n", maxDeleteIDs+1), wantErr: "over the limit of 10000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseIDsFile("ids.txt", []byte(tt.data))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
}
