// Package yamlnode holds the small helpers every reader of a parsed YAML
// document (goccy/go-yaml's ast) needs: a scalar's text and a node's line.
// signet reads its config, entries and kubeconfig files from the parsed
// nodes rather than through the library's reflective decoder, for exact
// line numbers in errors and a lighter agent binary (issue 19).
package yamlnode

import (
	"reflect"

	"github.com/goccy/go-yaml/ast"
)

// Scalar returns the text of a scalar node, looking through tags and
// anchors; ok is false for anything else (a mapping, a list, null).
func Scalar(n ast.Node) (s string, ok bool) {
	switch v := n.(type) {
	case *ast.TagNode:
		return Scalar(v.Value)
	case *ast.AnchorNode:
		return Scalar(v.Value)
	case *ast.StringNode:
		return v.Value, true
	case *ast.LiteralNode:
		return v.Value.Value, true
	case *ast.IntegerNode, *ast.FloatNode, *ast.BoolNode, *ast.InfinityNode, *ast.NanNode:
		return v.GetToken().Value, true
	}
	return "", false
}

// Line is n's line in the document, 0 when n has no token (an empty
// value).
func Line(n ast.Node) int {
	if n == nil || reflect.ValueOf(n).IsNil() || n.GetToken() == nil {
		return 0
	}
	return n.GetToken().Position.Line
}
