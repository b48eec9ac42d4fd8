package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// Configuration is layered: built-in defaults, then the YAML file
// (--config), then SIGNET_* environment variables, then flags. Every key of
// a config struct (its json tag) has a flag of the same name with dashes
// (trust_domain <-> --trust-domain) and an environment variable
// SIGNET_TRUST_DOMAIN. Unknown keys in the file are errors naming the key.

// configFlag describes one key for flag registration.
type configFlag struct {
	key   string
	usage string
}

// registerConfigFlags adds a string flag for every key of cfg (a pointer to
// a config struct), with the struct's current value as the shown default.
// It returns a function that applies file, environment and set flags to cfg
// in that order.
func registerConfigFlags(fs *flag.FlagSet, cfg any, usages map[string]string, getenv func(string) string) (configPath *string, apply func() error) {
	configPath = fs.String("config", "", "YAML config file (flags and SIGNET_* variables override it)")
	v := reflect.ValueOf(cfg).Elem()
	t := v.Type()
	for i := range t.NumField() {
		key := jsonKey(t.Field(i))
		if key == "" {
			continue
		}
		fs.String(flagName(key), formatValue(v.Field(i)), usages[key])
	}
	apply = func() error {
		if *configPath != "" {
			data, err := os.ReadFile(*configPath)
			if err != nil {
				return fmt.Errorf("reading config: %w", err)
			}
			if err := yaml.UnmarshalStrict(data, cfg); err != nil {
				err = configValueError(data, cfg, err)
				return fmt.Errorf("config %s: %s", *configPath, strings.TrimPrefix(err.Error(), "error unmarshaling JSON: while decoding JSON: "))
			}
		}
		for i := range t.NumField() {
			key := jsonKey(t.Field(i))
			if key == "" {
				continue
			}
			env := "SIGNET_" + strings.ToUpper(key)
			if val := getenv(env); val != "" {
				if err := setValue(v.Field(i), val); err != nil {
					return fmt.Errorf("environment %s=%q: %v", env, val, err)
				}
			}
		}
		var err error
		fs.Visit(func(f *flag.Flag) {
			if err != nil || f.Name == "config" {
				return
			}
			key := strings.ReplaceAll(f.Name, "-", "_")
			for i := range t.NumField() {
				if jsonKey(t.Field(i)) == key {
					if e := setValue(v.Field(i), f.Value.String()); e != nil {
						err = fmt.Errorf("flag --%s=%q: %v", f.Name, f.Value.String(), e)
					}
				}
			}
		})
		return err
	}
	return configPath, apply
}

func jsonKey(f reflect.StructField) string {
	tag := f.Tag.Get("json")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" {
		return ""
	}
	return name
}

func flagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// duration is a time.Duration written as "1h" in YAML and flags.
type duration time.Duration

func (d duration) MarshalJSON() ([]byte, error) {
	return []byte(strconv.Quote(time.Duration(d).String())), nil
}

func (d *duration) UnmarshalJSON(b []byte) error {
	s, err := strconv.Unquote(string(b))
	if err != nil {
		return errors.New("must be a quoted duration like \"1h\"")
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration like 1h or 90s", s)
	}
	*d = duration(v)
	return nil
}

func formatValue(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case duration:
		if x == 0 {
			return ""
		}
		return time.Duration(x).String()
	case []uint32:
		parts := make([]string, len(x))
		for i, u := range x {
			parts[i] = strconv.FormatUint(uint64(u), 10)
		}
		return strings.Join(parts, ",")
	case bool:
		if !x {
			return ""
		}
	}
	return fmt.Sprint(v.Interface())
}

func setValue(v reflect.Value, s string) error {
	switch v.Interface().(type) {
	case duration:
		d, err := time.ParseDuration(s)
		if err != nil {
			return errors.New("not a duration like 1h or 90s")
		}
		v.Set(reflect.ValueOf(duration(d)))
	case []uint32:
		var out []uint32
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p == "" {
				continue
			}
			u, err := strconv.ParseUint(p, 10, 32)
			if err != nil {
				return fmt.Errorf("%q is not a uid", p)
			}
			out = append(out, uint32(u))
		}
		v.Set(reflect.ValueOf(out))
	case string:
		v.SetString(s)
	case bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return errors.New("not true or false")
		}
		v.SetBool(b)
	case int:
		n, err := strconv.Atoi(s)
		if err != nil {
			return errors.New("not a number")
		}
		v.SetInt(int64(n))
	case float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return errors.New("not a number")
		}
		v.SetFloat(f)
	default:
		return fmt.Errorf("unsupported config type %s", v.Type())
	}
	return nil
}

func durationOf(d duration) time.Duration { return time.Duration(d) }

// loadConfig parses a daemon's flags (it takes no positional arguments)
// and applies the file, the environment and the flags to its config.
func loadConfig(fs *flag.FlagSet, args []string, apply func() error) error {
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if err := exactArgs(fs, pos); err != nil {
		return err
	}
	return apply()
}
