package deploy_test

import (
	"log/slog"
	"os"
	"slices"
	"testing"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

// TestAlertRules: prometheus/alerts.yaml is a rule file Prometheus loads
// (its own rule-file parser, strict about unknown keys, which also parses
// every expression and checks the templates), every expression is valid
// PromQL, every rule has a severity and a summary, and every signet metric
// it names is one the CA or the agent exports.
func TestAlertRules(t *testing.T) {
	data, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	p := parser.NewParser(parser.Options{})
	groups, errs := rulefmt.Parse(data, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	for _, err := range errs {
		t.Errorf("alerts.yaml: %v", err)
	}
	if len(errs) > 0 {
		return
	}
	known := exportedMetrics(t)
	var alerts []string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a recording rule (%s); this file holds alerts only", g.Name, r.Record)
				continue
			}
			alerts = append(alerts, r.Alert)
			expr, err := p.ParseExpr(r.Expr)
			if err != nil {
				t.Errorf("alert %s: %v", r.Alert, err)
				continue
			}
			parser.Inspect(expr, func(n parser.Node, _ []parser.Node) error {
				vs, ok := n.(*parser.VectorSelector)
				if !ok {
					return nil
				}
				if name := metricRef.FindString(vs.Name); name != "" && name == vs.Name && !known[name] {
					t.Errorf("alert %s uses %s, which neither the CA nor the agent exports", r.Alert, name)
				}
				return nil
			})
			if s := r.Labels["severity"]; s != "warning" && s != "critical" {
				t.Errorf("alert %s: severity %q, want warning or critical", r.Alert, s)
			}
			if r.Annotations["summary"] == "" {
				t.Errorf("alert %s has no summary", r.Alert)
			}
		}
	}
	// Names in templates (a query in an annotation) too.
	for _, name := range metricRef.FindAllString(string(data), -1) {
		if !known[name] {
			t.Errorf("alerts.yaml names %s, which neither the CA nor the agent exports", name)
		}
	}
	for _, want := range []string{"SignetCADown", "SignetAuditChainBroken", "SignetAuthorityExpiringSoon", "SignetAgentSVIDExpiringSoon"} {
		if !slices.Contains(alerts, want) {
			t.Errorf("no %s alert", want)
		}
	}
}
