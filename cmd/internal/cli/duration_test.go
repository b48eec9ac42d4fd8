package cli

import (
	"strings"
	"testing"
	"time"
)

var durationTests = []struct {
	in      string
	want    time.Duration
	wantErr string
}{
	{in: "0", want: 0},
	{in: "90s", want: 90 * time.Second},
	{in: "1h30m", want: 90 * time.Minute},
	{in: "7d", want: 7 * Day},
	{in: "90d", want: 90 * Day},
	{in: "1d12h", want: 36 * time.Hour},
	{in: "1.5d", want: 36 * time.Hour},
	{in: "2d3h4m5s", want: 2*Day + 3*time.Hour + 4*time.Minute + 5*time.Second},
	{in: "365d", want: 365 * Day},
	{in: "-1d", want: -Day},
	{in: "+1d", want: Day},
	{in: "100ms", want: 100 * time.Millisecond},
	{in: "", wantErr: `"" is not a duration`},
	{in: "d", wantErr: `"d" is not a duration`},
	{in: "1d-2h", wantErr: "is not a duration"},
	{in: "forever", wantErr: `"forever" is not a duration like 90s, 1h or 7d`},
	{in: "5", wantErr: `"5" has no unit: write 5s, 5m, 5h or 5d`},
	{in: "1w", wantErr: "is not a duration"},
	{in: "1dd", wantErr: "is not a duration"},
	{in: "d1", wantErr: "is not a duration"},
	{in: "1.d", want: Day},
	{in: ".5d", want: 12 * time.Hour},
	{in: "..5d", wantErr: "is not a duration"},
	{in: "107000d", wantErr: "too long"},
	{in: "106000d1000000h", wantErr: "too long"},
}

func TestParseDuration(t *testing.T) {
	for _, tt := range durationTests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseDuration(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseDuration(%q) = %v, %v; want error %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseDuration(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		7 * Day:           "7d",
		36 * time.Hour:    "1d12h",
		time.Hour:         "1h0m0s",
		90 * time.Minute:  "1h30m0s",
		Day + time.Minute: "24h1m0s",
		0:                 "0s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

// FuzzParseDuration: ParseDuration never panics, agrees with
// time.ParseDuration on what that takes, and reads back what
// FormatDuration writes.
func FuzzParseDuration(f *testing.F) {
	for _, tt := range durationTests {
		f.Add(tt.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseDuration(s)
		if std, stdErr := time.ParseDuration(s); stdErr == nil && (err != nil || got != std) {
			t.Fatalf("ParseDuration(%q) = %v, %v; time.ParseDuration gives %v", s, got, err, std)
		}
		if err != nil || got < 0 {
			return
		}
		back, err := ParseDuration(FormatDuration(got))
		if err != nil || back != got {
			t.Fatalf("ParseDuration(FormatDuration(%v) = %q) = %v, %v", got, FormatDuration(got), back, err)
		}
	})
}
