package cli

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Day is the "d" unit of ParseDuration: 24 hours, as operators mean it
// for TTLs and retention ("90d"), with no calendar or DST arithmetic.
const Day = 24 * time.Hour

// ParseDuration parses a duration as time.ParseDuration does, and also
// takes days: "7d", "90d", "1d12h", "1.5d". Every flag, config key and
// environment variable that holds a duration goes through it, so they all
// accept the same forms.
func ParseDuration(s string) (time.Duration, error) {
	orig := s
	neg := false
	if s != "" && (s[0] == '-' || s[0] == '+') {
		neg = s[0] == '-'
		s = s[1:]
	}
	if s == "0" {
		return 0, nil
	}
	if s != "" && strings.Trim(s, "0123456789") == "" {
		return 0, fmt.Errorf("%q has no unit: write %ss, %sm, %sh or %sd", orig, s, s, s, s)
	}
	if s == "" || !strings.Contains(s, "d") {
		// No day component: the standard parser, with its own messages
		// replaced by ours.
		d, err := time.ParseDuration(orig)
		if err != nil {
			return 0, durationSyntaxError(orig)
		}
		return d, nil
	}
	var total time.Duration
	for s != "" {
		// One component: a decimal number and a unit.
		i := 0
		for i < len(s) && (s[i] == '.' || ('0' <= s[i] && s[i] <= '9')) {
			i++
		}
		num := s[:i]
		j := i
		for j < len(s) && s[j] != '.' && (s[j] < '0' || s[j] > '9') {
			j++
		}
		unit := s[i:j]
		s = s[j:]
		if num == "" || num == "." || unit == "" {
			return 0, durationSyntaxError(orig)
		}
		var part time.Duration
		var err error
		if unit == "d" {
			// n days is n*24 hours: parse "n h" and scale, exactly for
			// whole and half days alike.
			part, err = time.ParseDuration(num + "h")
			if err == nil {
				if part > math.MaxInt64/24 {
					return 0, fmt.Errorf("%q is too long", orig)
				}
				part *= 24
			}
		} else {
			part, err = time.ParseDuration(num + unit)
		}
		if err != nil {
			return 0, durationSyntaxError(orig)
		}
		if total > math.MaxInt64-part {
			return 0, fmt.Errorf("%q is too long", orig)
		}
		total += part
	}
	if neg {
		total = -total
	}
	return total, nil
}

func durationSyntaxError(s string) error {
	return fmt.Errorf("%q is not a duration like 90s, 1h or 7d", s)
}

// FormatDuration writes d for people: whole days as "7d" and "1d12h",
// everything else as time.Duration does.
func FormatDuration(d time.Duration) string {
	if d <= 0 || d%time.Hour != 0 || d < Day {
		return d.String()
	}
	days, rest := d/Day, d%Day
	if rest == 0 {
		return fmt.Sprintf("%dd", days)
	}
	return fmt.Sprintf("%dd%dh", days, rest/time.Hour)
}

// durationValue is a pflag.Value for a duration flag that takes days.
type durationValue struct{ d *time.Duration }

func NewDurationValue(d *time.Duration, def time.Duration) durationValue {
	*d = def
	return durationValue{d}
}

func (v durationValue) String() string {
	if v.d == nil || *v.d == 0 {
		return "0" // what pflag's help takes for "no default"
	}
	return FormatDuration(*v.d)
}

func (v durationValue) Set(s string) error {
	d, err := ParseDuration(s)
	if err != nil {
		return err
	}
	*v.d = d
	return nil
}

func (v durationValue) Type() string { return "duration" }
