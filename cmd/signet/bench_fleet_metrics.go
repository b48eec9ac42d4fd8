package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The bench reads the server's own metrics (metrics_listen) to say what a
// rotate-now's time is made of: the window the CA spread the re-mint over,
// and how many mint calls its admission control refused meanwhile.

// metricsArgs picks a free loopback port for the server's metrics
// listener and returns the flag that sets it.
func (b *fleetBench) metricsArgs() ([]string, error) {
	addr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	b.metricsAddr = addr
	return []string{"--metrics-listen", addr}, nil
}

// freeLoopbackAddr is a loopback address with a port free now. The port
// is released for the server to bind: another process can take it
// meanwhile (startAndConnect tries the first start again).
func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// serverMetrics reads the server's /metrics; "" when the bench did not
// start the server.
func (b *fleetBench) serverMetrics(ctx context.Context) (string, error) {
	if b.metricsAddr == "" {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+b.metricsAddr+"/metrics", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("reading the server's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("reading the server's metrics: %s", resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// metricSum adds up the samples of metric name, in Prometheus text
// format, whose labels contain every one of labels (`code="..."`).
func metricSum(text, name string, labels ...string) float64 {
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest != "" && rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		series, value := "", rest
		if i := strings.LastIndexByte(rest, '}'); i >= 0 {
			series, value = rest[:i+1], rest[i+1:]
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		match := true
		for _, l := range labels {
			match = match && strings.Contains(series, l)
		}
		if v, err := strconv.ParseFloat(fields[0], 64); match && err == nil {
			sum += v
		}
	}
	return sum
}

// refusedMints is how many mint calls the server's admission control
// has refused since it started.
func refusedMints(metrics string) int {
	return int(metricSum(metrics, "signet_node_api_requests_total", `code="ResourceExhausted"`, `MintX509SVIDs`))
}

// refusedInFlight is how many mint calls the server refused at its bound
// on calls in flight (waiting on their commits) since it started.
func refusedInFlight(metrics string) int {
	return int(metricSum(metrics, "signet_admission_refusals_total", `bound="in_flight"`, `calls="mint_batches"`))
}
