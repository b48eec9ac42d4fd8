package cli

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// Configuration of the daemons (server, agent) is layered: built-in
// defaults, then the YAML file (--config), then SIGNET_* environment
// variables, then flags. Every key of a config struct (its json tag) has a
// flag of the same name with dashes (trust_domain <-> --trust-domain) and
// an environment variable SIGNET_TRUST_DOMAIN. Unknown keys in the file
// are errors naming the key and its line.

// maxConfigFile bounds what is read of a config or entries file: far
// above any real one, and short of exhausting memory on the wrong file.
const maxConfigFile = 16 << 20

// configValue is the flag of one config key. It keeps the text as given;
// apply parses it into the config with the key named in any error, after
// the file and the environment.
type configValue struct {
	text, typ string
	// list keys (string lists) take repeated flags and comma lists alike:
	// each --flag after the first adds to the list.
	list, set bool
}

func (c *configValue) String() string { return c.text }
func (c *configValue) Set(s string) error {
	if c.list && c.set {
		c.text += "," + s
	} else {
		c.text = s
	}
	c.set = true
	return nil
}
func (c *configValue) Type() string { return c.typ }

// RegisterConfigFlags adds a flag for every key of cfg (a pointer to a
// config struct), with the struct's current value as the shown default.
// Boolean keys are flags that take no value (--insecure-bootstrap). It
// returns a function that applies the file, the environment and the flags
// that were set to cfg, in that order.
func RegisterConfigFlags(fs *pflag.FlagSet, cfg any, usages map[string]string, getenv func(string) string) (configPath *string, apply func() error) {
	configPath = fs.String("config", "", "YAML config file (SIGNET_* variables and flags override it)")
	v := reflect.ValueOf(cfg).Elem()
	t := v.Type()
	for i := range t.NumField() {
		key := JSONKey(t.Field(i))
		if key == "" || FileOnly(t.Field(i)) {
			continue
		}
		_, list := v.Field(i).Interface().([]string)
		f := fs.VarPF(&configValue{text: formatValue(v.Field(i)), typ: typeName(v.Field(i)), list: list}, flagName(key), "", usages[key])
		if v.Field(i).Kind() == reflect.Bool {
			f.NoOptDefVal = "true"
		}
	}
	apply = func() error {
		if *configPath != "" {
			if err := readConfigFile(*configPath, cfg); err != nil {
				return err
			}
		}
		for i := range t.NumField() {
			key := JSONKey(t.Field(i))
			if key == "" || FileOnly(t.Field(i)) {
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
		fs.Visit(func(f *pflag.Flag) {
			if _, ok := f.Value.(*configValue); !ok || err != nil {
				return
			}
			key := strings.ReplaceAll(f.Name, "-", "_")
			for i := range t.NumField() {
				if JSONKey(t.Field(i)) == key {
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

// readConfigFile decodes a YAML config file into cfg.
func readConfigFile(path string, cfg any) error {
	data, err := ReadLimited(path, maxConfigFile)
	if err != nil {
		return fmt.Errorf("reading config: %w", err)
	}
	if err := DecodeConfig(data, cfg); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return nil
}

// DecodeConfig decodes a config file's content into cfg: a mapping of
// keys, or an empty file.
func DecodeConfig(data []byte, cfg any) error {
	doc, err := ParseYAML(data)
	if err != nil || doc == nil {
		return err
	}
	return DecodeYAMLStruct(doc, cfg, "a config file")
}

// ReadLimited reads a file of at most limit bytes.
func ReadLimited(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return ReadAllLimited(f, path, limit)
}

// ReadAllLimited reads r to its end, refusing more than limit bytes.
func ReadAllLimited(r io.Reader, name string, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: more than %d bytes is not a signet file", name, limit)
	}
	return data, nil
}

func JSONKey(f reflect.StructField) string {
	tag := f.Tag.Get("json")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" {
		return ""
	}
	return name
}

// FileOnly reports whether a config key is set in the file only (its json
// tag has the option "fileonly"): a list of structured items, such as
// k8s_clusters, has no sensible flag or environment variable.
func FileOnly(f reflect.StructField) bool {
	_, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
	for o := range strings.SplitSeq(opts, ",") {
		if o == "fileonly" {
			return true
		}
	}
	return false
}

func flagName(key string) string { return strings.ReplaceAll(key, "_", "-") }

// Duration is a config key holding a time.Duration, written "1h", "90s"
// or "7d" in files, variables and flags alike (ParseDuration).
type Duration time.Duration

func DurationOf(d Duration) time.Duration { return time.Duration(d) }

// typeName is the word the help shows after a config flag.
func typeName(v reflect.Value) string {
	switch v.Interface().(type) {
	case Duration:
		return "duration"
	case []uint32:
		return "uids"
	case []string:
		return "list"
	case bool:
		return "bool"
	case int, int64:
		return "int"
	case float64:
		return "float"
	}
	return "string"
}

func formatValue(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case Duration:
		if x == 0 {
			return ""
		}
		return FormatDuration(time.Duration(x))
	case []uint32:
		parts := make([]string, len(x))
		for i, u := range x {
			parts[i] = strconv.FormatUint(uint64(u), 10)
		}
		return strings.Join(parts, ",")
	case []string:
		return strings.Join(x, ",")
	case bool:
		if !x {
			return "false"
		}
	}
	return fmt.Sprint(v.Interface())
}

// parseBool reads true/false as strconv.ParseBool does, and also the YAML
// 1.1 words yes/no and on/off, which config files have always taken.
func parseBool(s string) (bool, error) {
	switch strings.ToLower(s) {
	case "yes", "on":
		return true, nil
	case "no", "off":
		return false, nil
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		return false, fmt.Errorf("%q is not true or false", s)
	}
	return b, nil
}

// setValue sets a config field from text: an environment variable, a
// flag, or a scalar of a YAML file.
func setValue(v reflect.Value, s string) error {
	switch v.Interface().(type) {
	case Duration:
		d, err := ParseDuration(s)
		if err != nil {
			return err
		}
		v.Set(reflect.ValueOf(Duration(d)))
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
	case uint32:
		u, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
		if err != nil {
			return fmt.Errorf("%q is not a uid", s)
		}
		v.SetUint(u)
	case []string:
		// A comma list; a YAML list sets each item through here, and an
		// item holding commas is several.
		var out []string
		for p := range strings.SplitSeq(s, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
		v.Set(reflect.ValueOf(out))
	case string:
		v.SetString(s)
	case bool:
		b, err := parseBool(s)
		if err != nil {
			return err
		}
		v.SetBool(b)
	case int, int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not a whole number", s)
		}
		v.SetInt(n)
	case float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("%q is not a number", s)
		}
		v.SetFloat(f)
	default:
		return fmt.Errorf("unsupported config type %s", v.Type())
	}
	return nil
}
