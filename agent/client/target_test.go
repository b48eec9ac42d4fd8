package client

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSplitAddress(t *testing.T) {
	tests := []struct {
		name    string
		address string
		want    []string
		wantErr string
	}{
		{name: "one", address: "ca.example.org:8081", want: []string{"ca.example.org:8081"}},
		{name: "replicas", address: "10.0.0.1:8081, 10.0.0.2:8081,,10.0.0.3:8081", want: []string{"10.0.0.1:8081", "10.0.0.2:8081", "10.0.0.3:8081"}},
		{name: "ipv6", address: "[::1]:8081", want: []string{"[::1]:8081"}},
		{name: "no port", address: "10.0.0.1:8081,10.0.0.2", wantErr: `CA address "10.0.0.2": must be host:port`},
		{name: "empty", address: " , ", wantErr: "no CA address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SplitAddress(tt.address)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("SplitAddress (-want +got):\n%s", diff)
			}
		})
	}
}
