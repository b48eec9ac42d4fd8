package main

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"sigs.k8s.io/yaml"
)

// configValueError explains a config file that failed to decode into cfg
// (a pointer to a config struct) by naming the key whose value is bad:
// encoding/json reports a custom type's error (a duration) without the
// field it was decoding. Unknown keys and YAML syntax errors already say
// where they are; for those, and when no single key fails on its own, err
// is returned as it was.
func configValueError(data []byte, cfg any, err error) error {
	if strings.Contains(err.Error(), "unknown field") {
		return err
	}
	var raw map[string]json.RawMessage
	if yaml.Unmarshal(data, &raw) != nil {
		return err
	}
	t := reflect.TypeOf(cfg).Elem()
	fields := map[string]reflect.Type{}
	for i := range t.NumField() {
		if k := jsonKey(t.Field(i)); k != "" {
			fields[k] = t.Field(i).Type
		}
	}
	keys := make([]string, 0, len(raw))
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		ft, ok := fields[k]
		if !ok {
			continue
		}
		if e := json.Unmarshal(raw[k], reflect.New(ft).Interface()); e != nil {
			return fmt.Errorf("%s: %s", k, strings.TrimPrefix(e.Error(), "json: "))
		}
	}
	return err
}
