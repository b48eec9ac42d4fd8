package cli

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"

	"github.com/signet-mesh/signet/internal/yamlnode"
)

// Config files and entries files are YAML (JSON is YAML too). They are
// decoded from the parsed document rather than through reflection on
// the whole file, so that every error names the line and the key it is
// about: "line 7: root_ttl: "forever" is not a duration". Struct fields
// are keyed by their json tags, as the -o json output is.

// YAMLError is a problem at a line of a YAML file.
type YAMLError struct {
	Line int    // 0 when unknown
	Msg  string // the problem, without the line
}

func (e *YAMLError) Error() string {
	if e.Line <= 0 {
		return e.Msg
	}
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// YAMLErrorf is a YAMLError at n's line.
func YAMLErrorf(n ast.Node, format string, args ...any) error {
	return &YAMLError{Line: yamlnode.Line(n), Msg: fmt.Sprintf(format, args...)}
}

// yamlSyntaxError is what the parser's errors are (goccy/go-yaml's
// yaml.Error), named here so that signet-agent does not link that
// package, whose reflective decoder signet does not use (issue 19).
type yamlSyntaxError interface {
	GetMessage() string
	GetToken() *token.Token
}

// ParseYAML parses data as one YAML document and returns its top node:
// nil for an empty document (or one of comments only).
func ParseYAML(data []byte) (ast.Node, error) {
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		var ye yamlSyntaxError
		if errors.As(err, &ye) && ye.GetToken() != nil {
			return nil, &YAMLError{Line: ye.GetToken().Position.Line, Msg: ye.GetMessage()}
		}
		return nil, err
	}
	var body ast.Node
	for _, d := range f.Docs {
		if d.Body == nil {
			continue
		}
		if body != nil {
			return nil, YAMLErrorf(d.Body, "a second YAML document: the file holds one")
		}
		body = d.Body
	}
	return UnwrapYAML(body)
}

// UnwrapYAML looks through tags and anchors to the value; aliases are
// refused (a value should be written where it is used).
func UnwrapYAML(n ast.Node) (ast.Node, error) {
	for {
		switch v := n.(type) {
		case *ast.TagNode:
			n = v.Value
		case *ast.AnchorNode:
			n = v.Value
		case *ast.AliasNode:
			return nil, YAMLErrorf(v, "YAML aliases (*name) are not supported here: write the value out")
		case *ast.NullNode:
			return nil, nil
		default:
			return n, nil
		}
	}
}

// YAMLField is one key of a mapping; Value is nil for a null value.
type YAMLField struct {
	Key   string
	Node  ast.Node // the key, for its line
	Value ast.Node
}

// YAMLMapping returns the keys of a mapping node in order. what names the
// thing for the error when n is not a mapping ("the config file").
func YAMLMapping(n ast.Node, what string) ([]YAMLField, error) {
	var pairs []*ast.MappingValueNode
	switch m := n.(type) {
	case *ast.MappingNode:
		pairs = m.Values
	case *ast.MappingValueNode:
		pairs = []*ast.MappingValueNode{m}
	default:
		return nil, YAMLErrorf(n, "%s must be a mapping of keys to values, not %s", what, YAMLKind(n))
	}
	out := make([]YAMLField, 0, len(pairs))
	for _, p := range pairs {
		if p.Key.Type() == ast.MergeKeyType {
			return nil, YAMLErrorf(p, "YAML merge keys (<<) are not supported here")
		}
		key, ok := yamlnode.Scalar(p.Key)
		if !ok {
			return nil, YAMLErrorf(p.Key, "%s has a key that is not a name", what)
		}
		v, err := UnwrapYAML(p.Value)
		if err != nil {
			return nil, err
		}
		out = append(out, YAMLField{Key: key, Node: p.Key, Value: v})
	}
	return out, nil
}

// YAMLKind names a node's kind for messages.
func YAMLKind(n ast.Node) string {
	switch n.(type) {
	case nil:
		return "empty"
	case *ast.SequenceNode:
		return "a list"
	case *ast.MappingNode, *ast.MappingValueNode:
		return "a mapping"
	}
	if s, ok := yamlnode.Scalar(n); ok {
		return fmt.Sprintf("the value %q", s)
	}
	return n.Type().String()
}

// DecodeYAMLStruct sets the fields of the struct dst points to from a
// mapping node, keyed by the fields' json tags. An unknown key, a key
// given twice and a bad value are errors naming the line and the key;
// a null value leaves the field as it was.
func DecodeYAMLStruct(n ast.Node, dst any, what string) error {
	fields, err := YAMLMapping(n, what)
	if err != nil {
		return err
	}
	v := reflect.ValueOf(dst).Elem()
	index := map[string]int{}
	for i := range v.NumField() {
		if k := JSONKey(v.Type().Field(i)); k != "" {
			index[k] = i
		}
	}
	for _, f := range fields {
		i, ok := index[f.Key]
		if !ok {
			return YAMLErrorf(f.Node, "unknown field %q", f.Key)
		}
		if f.Value == nil {
			continue
		}
		if err := setYAMLValue(v.Field(i), f.Value); err != nil {
			return YAMLErrorf(f.Node, "%s: %v", f.Key, err)
		}
	}
	return nil
}

// setYAMLValue sets a config field from a node: a scalar through
// setValue (as an environment variable or a flag would be), a list item
// by item.
func setYAMLValue(field reflect.Value, n ast.Node) error {
	if seq, ok := n.(*ast.SequenceNode); ok {
		if field.Kind() != reflect.Slice {
			return errors.New("want a single value, not a list")
		}
		out := reflect.MakeSlice(field.Type(), 0, len(seq.Values))
		if field.Type().Elem().Kind() == reflect.Struct {
			// A list of mappings, each decoded like the file itself.
			for i, item := range seq.Values {
				elem := reflect.New(field.Type().Elem())
				if err := DecodeYAMLStruct(item, elem.Interface(), fmt.Sprintf("item %d", i+1)); err != nil {
					return err
				}
				out = reflect.Append(out, elem.Elem())
			}
			field.Set(out)
			return nil
		}
		for _, item := range seq.Values {
			s, ok := yamlnode.Scalar(item)
			if !ok {
				return fmt.Errorf("list items must be single values, not %s", YAMLKind(item))
			}
			elem := reflect.New(field.Type().Elem()).Elem()
			if err := setValue(elem, s); err != nil {
				return err
			}
			out = reflect.Append(out, elem)
		}
		field.Set(out)
		return nil
	}
	s, ok := yamlnode.Scalar(n)
	if !ok {
		return fmt.Errorf("want a value, not %s", YAMLKind(n))
	}
	return setValue(field, s)
}
