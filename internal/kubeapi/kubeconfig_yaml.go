package kubeapi

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"

	"github.com/goccy/go-yaml/ast"
	"github.com/goccy/go-yaml/parser"
	"github.com/goccy/go-yaml/token"

	"github.com/signet-mesh/signet/internal/yamlnode"
)

// A kubeconfig is read from the parsed YAML document (goccy/go-yaml's
// parser and ast, which the config files use too) rather than through
// that library's reflective Unmarshal: the decoder is a third of the
// library's weight, and it would be linked into signet-agent for this one
// file (issue 19). Keys signet does not read are skipped, as Unmarshal
// skipped them; anchors, aliases and merge keys are followed.

// yamlErr is what the parser's errors look like: a message at a token.
type yamlErr interface {
	GetMessage() string
	GetToken() *token.Token
}

// decodeKubeconfig parses data into the fields of kc signet reads.
func decodeKubeconfig(data []byte) (kubeconfig, error) {
	var kc kubeconfig
	f, err := parser.ParseBytes(data, 0)
	if err != nil {
		var ye yamlErr
		if errors.As(err, &ye) && ye.GetToken() != nil {
			return kc, fmt.Errorf("line %d: %s", ye.GetToken().Position.Line, ye.GetMessage())
		}
		return kc, err
	}
	var body ast.Node
	for _, d := range f.Docs {
		if d.Body != nil {
			body = d.Body
			break
		}
	}
	d := kcDecoder{anchors: map[string]ast.Node{}}
	ast.Walk(&d, body)
	err = d.mapping(body, "the kubeconfig", func(key string, v ast.Node) error {
		switch key {
		case "current-context":
			return d.str(v, key, &kc.CurrentContext)
		case "clusters":
			return d.list(v, key, func(item ast.Node) error {
				var c kcCluster
				err := d.mapping(item, "a cluster", func(key string, v ast.Node) error {
					switch key {
					case "name":
						return d.str(v, key, &c.Name)
					case "cluster":
						return d.mapping(v, key, func(key string, v ast.Node) error {
							switch key {
							case "server":
								return d.str(v, key, &c.Cluster.Server)
							case "certificate-authority":
								return d.str(v, key, &c.Cluster.CertificateAuthority)
							case "certificate-authority-data":
								return d.str(v, key, &c.Cluster.CertificateAuthorityData)
							case "insecure-skip-tls-verify":
								return d.boolean(v, key, &c.Cluster.InsecureSkipTLSVerify)
							case "tls-server-name":
								return d.str(v, key, &c.Cluster.TLSServerName)
							}
							return nil
						})
					}
					return nil
				})
				kc.Clusters = append(kc.Clusters, c)
				return err
			})
		case "users":
			return d.list(v, key, func(item ast.Node) error {
				var u kcUser
				err := d.mapping(item, "a user", func(key string, v ast.Node) error {
					switch key {
					case "name":
						return d.str(v, key, &u.Name)
					case "user":
						return d.mapping(v, key, func(key string, v ast.Node) error {
							switch key {
							case "token":
								return d.str(v, key, &u.User.Token)
							case "tokenFile":
								return d.str(v, key, &u.User.TokenFile)
							case "client-certificate":
								return d.str(v, key, &u.User.ClientCertificate)
							case "client-certificate-data":
								return d.str(v, key, &u.User.ClientCertificateData)
							case "client-key":
								return d.str(v, key, &u.User.ClientKey)
							case "client-key-data":
								return d.str(v, key, &u.User.ClientKeyData)
							case "exec":
								u.User.Exec = d.resolve(v) != nil
							case "auth-provider":
								u.User.AuthProvider = d.resolve(v) != nil
							}
							return nil
						})
					}
					return nil
				})
				kc.Users = append(kc.Users, u)
				return err
			})
		case "contexts":
			return d.list(v, key, func(item ast.Node) error {
				var c kcContext
				err := d.mapping(item, "a context", func(key string, v ast.Node) error {
					switch key {
					case "name":
						return d.str(v, key, &c.Name)
					case "context":
						return d.mapping(v, key, func(key string, v ast.Node) error {
							switch key {
							case "cluster":
								return d.str(v, key, &c.Context.Cluster)
							case "user":
								return d.str(v, key, &c.Context.User)
							}
							return nil
						})
					}
					return nil
				})
				kc.Contexts = append(kc.Contexts, c)
				return err
			})
		}
		return nil
	})
	return kc, err
}

// kcDecoder reads values out of a parsed kubeconfig; anchors maps the
// document's anchors to their values, for aliases.
type kcDecoder struct{ anchors map[string]ast.Node }

// Visit records every anchor of the document (ast.Visitor).
func (d *kcDecoder) Visit(n ast.Node) ast.Visitor {
	if a, ok := n.(*ast.AnchorNode); ok && a.Name != nil {
		d.anchors[a.Name.GetToken().Value] = a.Value
	}
	return d
}

// resolve looks through tags, anchors and aliases to the value; nil for
// a null (or missing) value.
func (d *kcDecoder) resolve(n ast.Node) ast.Node {
	for range 100 { // bounds a loop of aliases
		if n == nil || reflect.ValueOf(n).IsNil() {
			return nil
		}
		switch v := n.(type) {
		case *ast.TagNode:
			n = v.Value
		case *ast.AnchorNode:
			n = v.Value
		case *ast.AliasNode:
			if v.Value == nil {
				return nil
			}
			n = d.anchors[v.Value.GetToken().Value]
		case *ast.NullNode:
			return nil
		default:
			return n
		}
	}
	return nil
}

// mapping calls field for each key of a mapping node (a null value is no
// keys); merge keys (<<) bring in the keys of the mappings they name.
func (d *kcDecoder) mapping(n ast.Node, what string, field func(key string, v ast.Node) error) error {
	var pairs []*ast.MappingValueNode
	switch m := d.resolve(n).(type) {
	case nil:
		return nil
	case *ast.MappingNode:
		pairs = m.Values
	case *ast.MappingValueNode:
		pairs = []*ast.MappingValueNode{m}
	default:
		return fmt.Errorf("line %d: %s must be a mapping", yamlnode.Line(n), what)
	}
	for _, p := range pairs {
		if p.Key.Type() == ast.MergeKeyType {
			v := d.resolve(p.Value)
			if seq, ok := v.(*ast.SequenceNode); ok {
				for _, item := range seq.Values {
					if err := d.mapping(item, what, field); err != nil {
						return err
					}
				}
				continue
			}
			if err := d.mapping(v, what, field); err != nil {
				return err
			}
			continue
		}
		key, ok := d.scalar(p.Key)
		if !ok {
			return fmt.Errorf("line %d: %s has a key that is not a name", yamlnode.Line(p.Key), what)
		}
		if err := field(key, p.Value); err != nil {
			return err
		}
	}
	return nil
}

// list calls item for each item of a sequence node (a null value is no
// items).
func (d *kcDecoder) list(n ast.Node, key string, item func(ast.Node) error) error {
	switch s := d.resolve(n).(type) {
	case nil:
		return nil
	case *ast.SequenceNode:
		for _, v := range s.Values {
			if err := item(v); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("line %d: %s must be a list", yamlnode.Line(n), key)
}

// str sets *dst to a scalar's text; a null leaves it empty.
func (d *kcDecoder) str(n ast.Node, key string, dst *string) error {
	if d.resolve(n) == nil {
		return nil
	}
	s, ok := d.scalar(n)
	if !ok {
		return fmt.Errorf("line %d: %s must be a single value", yamlnode.Line(n), key)
	}
	*dst = s
	return nil
}

// boolean sets *dst from true or false.
func (d *kcDecoder) boolean(n ast.Node, key string, dst *bool) error {
	if d.resolve(n) == nil {
		return nil
	}
	s, ok := d.scalar(n)
	b, err := strconv.ParseBool(s)
	if !ok || err != nil {
		return fmt.Errorf("line %d: %s must be true or false", yamlnode.Line(n), key)
	}
	*dst = b
	return nil
}

// scalar returns the text of a scalar node, following an alias.
func (d *kcDecoder) scalar(n ast.Node) (string, bool) { return yamlnode.Scalar(d.resolve(n)) }
