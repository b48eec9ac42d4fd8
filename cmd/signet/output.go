package main

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/signet-mesh/signet/cmd/internal/cli"
	"github.com/spf13/cobra"
)

// Output formats of -o. Every list command offers all three; a command
// that prints one object offers table and json.
const (
	outputTable = "table"
	outputJSON  = "json"
	outputCSV   = "csv"
)

var (
	listFormats   = []string{outputTable, outputJSON, outputCSV}
	objectFormats = []string{outputTable, outputJSON}
)

// outputOption is the -o/--output flag, registered only on commands whose
// output it changes. A value not offered is refused while the flags are
// parsed, before anything is sent.
type outputOption struct {
	format string
}

func (o *outputOption) addFlags(cmd *cobra.Command, formats []string) {
	cmd.Flags().VarP(newChoiceValue(&o.format, formats[0], formats, "output format"), "output", "o", "output format: "+orList(formats))
	cmd.RegisterFlagCompletionFunc("output", cobra.FixedCompletions(formats, cobra.ShellCompDirectiveNoFileComp))
}

func (o *outputOption) json() bool { return o.format == outputJSON }

// printList writes items, a slice of JSON-tagged structs, in the chosen
// format: a table of header and rows, a JSON array (empty, never null),
// or CSV whose columns are the items' JSON keys in order.
func (o *outputOption) printList(w io.Writer, items any, header []string, rows [][]string) error {
	switch o.format {
	case outputJSON:
		return printJSON(w, items)
	case outputCSV:
		return printCSV(w, items)
	}
	return printTable(w, header, rows)
}

// choiceValue is a string flag that takes one of a fixed set of values.
type choiceValue struct {
	v       *string
	choices []string
	what    string
}

func newChoiceValue(v *string, def string, choices []string, what string) *choiceValue {
	*v = def
	return &choiceValue{v: v, choices: choices, what: what}
}

func (c *choiceValue) String() string { return *c.v }
func (c *choiceValue) Type() string   { return "string" }

func (c *choiceValue) Set(s string) error {
	if !slices.Contains(c.choices, s) {
		return fmt.Errorf("unknown %s: use %s", c.what, orList(c.choices))
	}
	*c.v = s
	return nil
}

// orList writes "a, b or c".
func orList(items []string) string {
	switch len(items) {
	case 0:
		return ""
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printTable writes rows under a header, aligned.
func printTable(w io.Writer, header []string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

// printCSV writes a slice of JSON-tagged structs as CSV: one column per
// JSON key, in field order, so the CSV and JSON forms of a list always
// agree. Lists of strings are joined with commas (the CSV quotes them);
// nested values are written as compact JSON.
func printCSV(w io.Writer, items any) error {
	v := reflect.ValueOf(items)
	if v.Kind() != reflect.Slice || v.Type().Elem().Kind() != reflect.Struct {
		return fmt.Errorf("internal error: csv of %T", items)
	}
	t := v.Type().Elem()
	var fields []int
	var header []string
	for i := range t.NumField() {
		if key := cli.JSONKey(t.Field(i)); key != "" && t.Field(i).IsExported() {
			fields = append(fields, i)
			header = append(header, key)
		}
	}
	cw := csv.NewWriter(w)
	cw.Write(header)
	for i := range v.Len() {
		row := make([]string, len(fields))
		for j, f := range fields {
			row[j] = csvCell(v.Index(i).Field(f))
		}
		cw.Write(row)
	}
	cw.Flush()
	return cw.Error()
}

func csvCell(v reflect.Value) string {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return ""
		}
		return csvCell(v.Elem())
	case reflect.String:
		return v.String()
	case reflect.Bool:
		return strconv.FormatBool(v.Bool())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10)
	case reflect.Slice:
		if v.Type().Elem().Kind() == reflect.String || v.Type().Elem().Kind() == reflect.Uint32 {
			parts := make([]string, v.Len())
			for i := range parts {
				parts[i] = csvCell(v.Index(i))
			}
			return strings.Join(parts, ",")
		}
	}
	b, err := json.Marshal(v.Interface())
	if err != nil {
		return ""
	}
	return string(b)
}

// unixTime writes Unix seconds as RFC 3339 UTC; 0 is "-".
func unixTime(sec int64) string {
	if sec == 0 {
		return "-"
	}
	return time.Unix(sec, 0).UTC().Format(time.RFC3339)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func orDash(s string) string {
	if strings.TrimSpace(s) == "" {
		return "-"
	}
	return s
}
