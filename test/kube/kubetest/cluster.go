package kubetest

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	// Issuer is the iss claim of the cluster's service account tokens.
	Issuer = "https://kubernetes.default.svc.cluster.local"
	// APIAudience is the audience the API server accepts tokens for: a token
	// requested without audiences gets it.
	APIAudience = Issuer

	// startTimeout bounds each process's start: etcd and the API server are
	// ready in about 3 s when the machine is idle.
	startTimeout = 90 * time.Second
	// stopTimeout is how long a process has to exit after SIGTERM before it
	// is killed.
	stopTimeout = 10 * time.Second
	// callTimeout bounds each API call a helper makes.
	callTimeout = 30 * time.Second
	// logLines is how much of each process's output a failed test prints.
	logLines = 150
)

// Cluster is a kube-apiserver and its etcd running on 127.0.0.1, both stopped
// and their state removed when the test that started them ends. There is no
// controller manager, scheduler or kubelet: nothing happens to objects but
// what the test does (a pod stays as created until its status is set, a
// deleted pod with spec.nodeName set is gone only when deleted with a grace
// period of 0, which DeletePod does, as a kubelet would).
type Cluster struct {
	// Server is the API server's URL, https://127.0.0.1:<port>.
	Server string
	// CAPEM is the PEM certificate of the CA that signed the API server's
	// serving certificate (and the admin client certificate).
	CAPEM []byte
	// Config authenticates as a member of system:masters.
	Config *rest.Config
	// Client is a clientset on Config.
	Client *kubernetes.Clientset
	// Kubeconfig is the path of a kubeconfig file for Config.
	Kubeconfig string

	dir string // state of this cluster, under the test's temp dir
}

var (
	binsOnce sync.Once
	bins     Binaries
	binsErr  error
)

// Start runs etcd and kube-apiserver on free ports of 127.0.0.1, waits until
// the API server is ready (at most a minute and a half each), and returns
// its admin client. The binaries come from BuildBinaries: when CI has not
// built them first, the first test to need them builds them (about 10
// minutes cold, longer than go test's default timeout). Skipped under -short.
// A failed test prints the end of both processes' output.
func Start(t testing.TB) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("kubetest: runs a real kube-apiserver and etcd: skipped with -short")
	}
	binsOnce.Do(func() { bins, binsErr = BuildBinaries(t.Logf) })
	if binsErr != nil {
		t.Fatal(binsErr)
	}

	began := time.Now()
	dir := t.TempDir()
	p, err := newPKI(dir)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	c := &Cluster{CAPEM: p.caCert, dir: dir}

	ports := freePorts(t, 3)
	etcdClient, etcdPeer, apiPort := ports[0], ports[1], ports[2]
	etcd := startProcess(t, "etcd", bins.Etcd, filepath.Join(dir, "etcd.log"),
		"--name=kubetest",
		"--data-dir="+filepath.Join(dir, "etcd-data"),
		"--listen-client-urls=http://127.0.0.1:"+etcdClient,
		"--advertise-client-urls=http://127.0.0.1:"+etcdClient,
		"--listen-peer-urls=http://127.0.0.1:"+etcdPeer,
		"--initial-advertise-peer-urls=http://127.0.0.1:"+etcdPeer,
		"--initial-cluster=kubetest=http://127.0.0.1:"+etcdPeer,
		// Nothing survives the test: fsync only slows it down.
		"--unsafe-no-fsync",
		"--log-level=warn",
	)
	waitFor(t, etcd, "etcd /health", func(ctx context.Context) error {
		return httpOK(ctx, "http://127.0.0.1:"+etcdClient+"/health")
	})

	apiserver := startProcess(t, "kube-apiserver", bins.APIServer, filepath.Join(dir, "kube-apiserver.log"),
		"--etcd-servers=http://127.0.0.1:"+etcdClient,
		"--bind-address=127.0.0.1",
		"--secure-port="+apiPort,
		// Without these two, the API server looks for a non-loopback
		// address to advertise and keeps the kubernetes service's
		// endpoints pointing at it.
		"--advertise-address=127.0.0.1",
		"--endpoint-reconciler-type=none",
		// Service IPs are only allocated, never routed: no kube-proxy runs.
		"--service-cluster-ip-range=10.0.0.0/24",
		"--cert-dir="+filepath.Join(dir, "apiserver-certs"),
		"--tls-cert-file="+p.servingCert,
		"--tls-private-key-file="+p.servingKey,
		"--client-ca-file="+p.caFile,
		"--service-account-issuer="+Issuer,
		"--api-audiences="+APIAudience,
		"--service-account-key-file="+p.saPublicKey,
		"--service-account-signing-key-file="+p.saSigningKey,
		"--authorization-mode=Node,RBAC",
		// The default admission plugins admit a pod with spec.nodeName set
		// and no scheduler or kubelet; ServiceAccount among them requires
		// the pod's service account to exist (no controller creates
		// "default"), which CreatePod's callers do first.
		"--profiling=false",
	)
	c.Server = "https://127.0.0.1:" + apiPort
	c.Config = &rest.Config{
		Host: c.Server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   p.caCert,
			CertData: p.adminCert,
			KeyData:  p.adminKey,
		},
		// Tests make bursts of calls; client-side throttling would only
		// slow them down.
		QPS:   200,
		Burst: 400,
	}
	c.Client, err = kubernetes.NewForConfig(c.Config)
	if err != nil {
		t.Fatalf("kubetest: creating the admin client: %v", err)
	}
	waitFor(t, apiserver, "kube-apiserver /readyz", func(ctx context.Context) error {
		return c.Client.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).Error()
	})
	// The API server creates the default namespace just after it starts
	// serving; helpers create objects there.
	waitFor(t, apiserver, "the default namespace", func(ctx context.Context) error {
		_, err := c.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{})
		return err
	})

	c.Kubeconfig = filepath.Join(dir, "admin.kubeconfig")
	c.writeKubeconfig(t, c.Kubeconfig, &clientcmdapi.AuthInfo{
		ClientCertificateData: p.adminCert,
		ClientKeyData:         p.adminKey,
	})
	t.Logf("kubetest: etcd and kube-apiserver ready at %s in %s", c.Server, time.Since(began).Round(time.Millisecond))
	return c
}

// writeKubeconfig writes a kubeconfig for this cluster with one user.
func (c *Cluster) writeKubeconfig(t testing.TB, path string, user *clientcmdapi.AuthInfo) {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["kubetest"] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: c.CAPEM}
	cfg.AuthInfos["user"] = user
	cfg.Contexts["kubetest"] = &clientcmdapi.Context{Cluster: "kubetest", AuthInfo: "user"}
	cfg.CurrentContext = "kubetest"
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatalf("kubetest: writing kubeconfig %s: %v", path, err)
	}
}

// process is a child process whose output goes to a file.
type process struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // its exit status, once done is closed
}

// startProcess starts bin and registers a cleanup that stops it (SIGTERM,
// then SIGKILL after stopTimeout) and, if the test failed, prints the end
// of its output.
func startProcess(t testing.TB, name, bin, logPath string, args ...string) *process {
	t.Helper()
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("kubetest: %v", err)
	}
	defer logFile.Close() // the child has its own copy
	cmd := exec.Command(bin, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = filepath.Dir(logPath)
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("kubetest: starting %s: %v", name, err)
	}
	p := &process{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			t.Logf("kubetest: end of %s output:\n%s", name, tail(logPath, logLines))
		}
	})
	return p
}

func (p *process) stop(t testing.TB) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(stopTimeout):
	}
	t.Logf("kubetest: %s did not exit %s after SIGTERM: killing it", p.name, stopTimeout)
	p.cmd.Process.Kill()
	<-p.done
}

// waitFor polls check until it returns nil, failing the test when startTimeout
// passes or p exits first.
func waitFor(t testing.TB, p *process, what string, check func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		callCtx, callCancel := context.WithTimeout(ctx, 5*time.Second)
		err := check(callCtx)
		callCancel()
		if err == nil {
			return
		}
		select {
		case <-p.done:
			t.Fatalf("kubetest: %s exited (%v) while waiting for %s; last error: %v", p.name, p.err, what, err)
		case <-ctx.Done():
			t.Fatalf("kubetest: %s not ready after %s while waiting for %s: %v", p.name, startTimeout, what, err)
		case <-tick.C:
		}
	}
}

func httpOK(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

// freePorts returns n distinct ports of 127.0.0.1 that were free a moment
// ago. Another process may take one before ours binds it; ours then exits and
// the test fails with its output, which names the port.
func freePorts(t testing.TB, n int) []string {
	t.Helper()
	var ports []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("kubetest: finding a free port: %v", err)
		}
		defer ln.Close() // held until all n are chosen, so that they differ
		ports = append(ports, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
	}
	return ports
}
