package check

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"go.uber.org/zap"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"

	"github.com/aluminiapp/pipeline/lib/registry"
	"github.com/aluminiapp/pipeline/lib/service"
)

const (
	chartDir  = "../helm/alumini"
	namespace = "analytics"
	release   = "alumini"
)

// valueSets are the values the chart is checked with: its defaults, the
// production-like file, and the defaults with the chart making the Secret.
func valueSets(t *testing.T) map[string]map[string]any {
	t.Helper()
	prod, err := common.ReadValuesFile(chartDir + "/ci/production-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return map[string]map[string]any{
		"defaults":   {},
		"production": prod,
		"secrets": {"secrets": map[string]any{
			"create": true, "visitorSecret": strings.Repeat("v", 32), "clickhousePassword": "ch", "kafkaSaslPassword": "sasl",
		}},
	}
}

// TestChartLints is `helm lint --strict`: warnings fail too.
func TestChartLints(t *testing.T) {
	for name, vals := range valueSets(t) {
		t.Run(name, func(t *testing.T) {
			res := lint.RunAll(chartDir, vals, namespace, lint.WithKubeVersion(kubeVersion(t)))
			for _, m := range res.Messages {
				if m.Severity >= support.WarningSev {
					t.Errorf("helm lint: %s", m)
				} else {
					t.Logf("helm lint: %s", m)
				}
			}
		})
	}
}

func kubeVersion(t *testing.T) *common.KubeVersion {
	t.Helper()
	// The oldest Kubernetes the chart supports (Chart.yaml kubeVersion):
	// the preStop sleep action is on by default from 1.30.
	v, err := common.ParseKubeVersion("v1.30.0")
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// render is `helm template`: the chart's manifests for vals, by template.
func render(t *testing.T, vals map[string]any) (map[string]string, error) {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion = *kubeVersion(t)
	top, err := util.ToRenderValuesWithSchemaValidation(ch, vals,
		common.ReleaseOptions{Name: release, Namespace: namespace, IsInstall: true}, caps, false)
	if err != nil {
		t.Fatal(err)
	}
	return engine.Engine{Strict: true}.Render(ch, top)
}

// decoder decodes strictly: a field the type does not have, or one given
// twice, is an error, as `kubectl apply --validate=strict` makes it.
var decoder = func() runtime.Decoder {
	sch := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{clientgoscheme.AddToScheme, monitoringv1.AddToScheme} {
		if err := add(sch); err != nil {
			panic(err)
		}
	}
	return serializer.NewCodecFactory(sch, serializer.EnableStrict).UniversalDeserializer()
}()

var docSeparator = regexp.MustCompile(`(?m)^---\s*$`)

// objects renders vals and decodes every manifest into its typed object.
func objects(t *testing.T, vals map[string]any) []runtime.Object {
	t.Helper()
	files, err := render(t, vals)
	if err != nil {
		t.Fatalf("helm template: %v", err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var objs []runtime.Object
	for _, n := range names {
		if strings.HasSuffix(n, "NOTES.txt") {
			continue
		}
		for _, doc := range docSeparator.Split(files[n], -1) {
			if !hasContent(doc) {
				continue
			}
			obj, _, err := decoder.Decode([]byte(doc), nil, nil)
			if err != nil {
				t.Fatalf("%s: %v\n%s", n, err, doc)
			}
			objs = append(objs, obj)
		}
	}
	return objs
}

// hasContent is false for a document of only comments and blank lines.
func hasContent(doc string) bool {
	for _, line := range strings.Split(doc, "\n") {
		if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
			return true
		}
	}
	return false
}

func TestStrictDecodingRefusesUnknownFields(t *testing.T) {
	doc := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: b}\nbogus: true\n"
	if _, _, err := decoder.Decode([]byte(doc), nil, nil); err == nil || !strings.Contains(err.Error(), "bogus") {
		t.Errorf("Decode(a ConfigMap with a field bogus) = %v; want an error naming it", err)
	}
}

// TestChartRendersValidWiredObjects renders each value set and checks
// that the objects fit together and fit the services.
func TestChartRendersValidWiredObjects(t *testing.T) {
	for name, vals := range valueSets(t) {
		t.Run(name, func(t *testing.T) {
			c := newCluster(t, objects(t, vals))
			for _, s := range services {
				c.checkDeployment(s)
			}
			c.checkServices()
			c.checkAutoscalers()
			c.checkBudgets()
			c.checkMonitoring()
			c.checkSecretKeys()
			c.checkMigrationJob()
		})
	}
}

// cluster is the rendered objects by kind.
type cluster struct {
	t            *testing.T
	deployments  map[string]*appsv1.Deployment // by service
	services     []*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	hpas         []*autoscalingv2.HorizontalPodAutoscaler
	pdbs         []*policyv1.PodDisruptionBudget
	ingresses    []*networkingv1.Ingress
	monitors     []*monitoringv1.ServiceMonitor
	rules        []*monitoringv1.PrometheusRule
	jobs         []*batchv1.Job
	kindsPresent map[string]int
}

func newCluster(t *testing.T, objs []runtime.Object) *cluster {
	c := &cluster{t: t, deployments: map[string]*appsv1.Deployment{}, configMaps: map[string]*corev1.ConfigMap{},
		secrets: map[string]*corev1.Secret{}, kindsPresent: map[string]int{}}
	for _, o := range objs {
		c.kindsPresent[fmt.Sprintf("%T", o)]++
		switch o := o.(type) {
		case *appsv1.Deployment:
			c.deployments[o.Spec.Template.Labels["app.kubernetes.io/component"]] = o
		case *corev1.Service:
			c.services = append(c.services, o)
		case *corev1.ConfigMap:
			c.configMaps[o.Name] = o
		case *corev1.Secret:
			c.secrets[o.Name] = o
		case *autoscalingv2.HorizontalPodAutoscaler:
			c.hpas = append(c.hpas, o)
		case *policyv1.PodDisruptionBudget:
			c.pdbs = append(c.pdbs, o)
		case *networkingv1.Ingress:
			c.ingresses = append(c.ingresses, o)
		case *monitoringv1.ServiceMonitor:
			c.monitors = append(c.monitors, o)
		case *monitoringv1.PrometheusRule:
			c.rules = append(c.rules, o)
		case *batchv1.Job:
			c.jobs = append(c.jobs, o)
		case *corev1.ServiceAccount:
		default:
			t.Errorf("rendered a %T, which no check looks at", o)
		}
	}
	for _, s := range services {
		if c.deployments[s] == nil {
			t.Fatalf("no Deployment of the %s; rendered %v", s, c.kindsPresent)
		}
	}
	return c
}

// env is a container's literal environment, and the secret references.
func env(ctr corev1.Container) (map[string]string, map[string]*corev1.SecretKeySelector) {
	lit, refs := map[string]string{}, map[string]*corev1.SecretKeySelector{}
	for _, e := range ctr.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			refs[e.Name] = e.ValueFrom.SecretKeyRef
			continue
		}
		lit[e.Name] = e.Value
	}
	return lit, refs
}

func containerPort(ctr corev1.Container, name string) (int32, bool) {
	for _, p := range ctr.Ports {
		if p.Name == name {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

func (c *cluster) checkDeployment(svc string) {
	t := c.t
	d := c.deployments[svc]
	pod := d.Spec.Template.Spec
	if len(pod.Containers) != 1 {
		t.Fatalf("%s: %d containers; want 1", svc, len(pod.Containers))
	}
	ctr := pod.Containers[0]
	lit, refs := env(ctr)
	checkEnv(t, "Deployment "+d.Name, svc, lit)
	for name := range refs {
		checkEnv(t, "Deployment "+d.Name+" (from a Secret)", svc, map[string]string{name: "x"})
	}

	// The admin port: bound on all interfaces (the default is loopback,
	// which no probe reaches), and the port the probes name.
	adminPort, ok := containerPort(ctr, "admin")
	if !ok {
		t.Fatalf("%s: no container port named admin", svc)
	}
	checkListen(t, svc, "ALUMINI_ADMIN_ADDR", lit["ALUMINI_ADMIN_ADDR"], adminPort)
	if httpPort, ok := containerPort(ctr, "http"); ok {
		checkListen(t, svc, "ALUMINI_LISTEN_ADDR", lit["ALUMINI_LISTEN_ADDR"], httpPort)
	} else if _, has := serviceFlags[svc]["ALUMINI_LISTEN_ADDR"]; has {
		t.Errorf("%s listens for the public but its container has no port named http", svc)
	}
	for what, p := range map[string]*corev1.Probe{"liveness": ctr.LivenessProbe, "readiness": ctr.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s probe", svc, what)
			continue
		}
		port := p.HTTPGet.Port.IntVal
		if p.HTTPGet.Port.StrVal != "" {
			port, ok = containerPort(ctr, p.HTTPGet.Port.StrVal)
			if !ok {
				t.Errorf("%s: %s probe names port %q, which the container lacks", svc, what, p.HTTPGet.Port.StrVal)
			}
		}
		if port != adminPort {
			t.Errorf("%s: %s probe on port %d; the admin endpoints are on %d", svc, what, port, adminPort)
		}
		want := map[string]string{"liveness": "/healthz", "readiness": "/readyz"}[what]
		if p.HTTPGet.Path != want {
			t.Errorf("%s: %s probe path %q; want %q", svc, what, p.HTTPGet.Path, want)
		}
		checkAdminServes(t, p.HTTPGet.Path)
	}

	// Shutdown: the kubelet's preStop wait, the drain delay and the flush
	// must end before the grace period does, or the kubelet kills a
	// service in the middle of flushing.
	drain := duration(t, svc, lit, "ALUMINI_DRAIN_DELAY")
	flush := duration(t, svc, lit, "ALUMINI_SHUTDOWN_TIMEOUT")
	var preStop time.Duration
	if ctr.Lifecycle != nil && ctr.Lifecycle.PreStop != nil {
		if ctr.Lifecycle.PreStop.Sleep == nil {
			t.Errorf("%s: preStop is not a sleep; the distroless image has no shell to run a command", svc)
		} else {
			preStop = time.Duration(ctr.Lifecycle.PreStop.Sleep.Seconds) * time.Second
		}
	}
	grace := time.Duration(*pod.TerminationGracePeriodSeconds) * time.Second
	// service.Main gives the admin server 5s more to stop.
	if total := preStop + drain + flush + 5*time.Second; total >= grace {
		t.Errorf("%s: preStop %v + drain-delay %v + shutdown-timeout %v + 5s = %v exceeds terminationGracePeriodSeconds %v",
			svc, preStop, drain, flush, total, grace)
	}
	if svc == "collector" && (drain <= 0 || preStop <= 0) {
		t.Errorf("collector: preStop %v, drain-delay %v; want both, so it leaves the load balancer before intake stops", preStop, drain)
	}

	if ctr.Resources.Requests.Cpu().IsZero() || ctr.Resources.Requests.Memory().IsZero() || ctr.Resources.Limits.Memory().IsZero() {
		t.Errorf("%s: resources %+v; want CPU and memory requests and a memory limit", svc, ctr.Resources)
	}

	c.checkSecurity(svc, pod)
	c.checkFiles(svc, pod, lit)
}

// checkSecurity: non-root, read-only, no privileges.
func (c *cluster) checkSecurity(svc string, pod corev1.PodSpec) {
	sc, psc := pod.Containers[0].SecurityContext, pod.SecurityContext
	if sc == nil || psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
		sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
		sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		c.t.Errorf("%s: security context %+v, pod %+v; want non-root, read-only root, no escalation, all capabilities dropped", svc, sc, psc)
	}
}

// checkMigrationJob: the pre-upgrade Job runs `sinker migrate` with the
// sinker's ClickHouse settings.
func (c *cluster) checkMigrationJob() {
	t := c.t
	if len(c.jobs) != 1 {
		t.Errorf("%d Jobs rendered; want the migration's", len(c.jobs))
		return
	}
	j := c.jobs[0]
	if j.Annotations["helm.sh/hook"] != "pre-upgrade" {
		t.Errorf("Job %s: hook %q; want pre-upgrade (the sinker migrates a new install itself)", j.Name, j.Annotations["helm.sh/hook"])
	}
	pod := j.Spec.Template.Spec
	ctr := pod.Containers[0]
	if !slices.Equal(ctr.Args, []string{"migrate"}) || !strings.HasSuffix(ctr.Image, "/sinker:"+strings.SplitN(ctr.Image, ":", 2)[1]) {
		t.Errorf("Job %s runs %s %v; want the sinker image with migrate", j.Name, ctr.Image, ctr.Args)
	}
	lit, refs := env(ctr)
	checkEnv(t, "Job "+j.Name, "sinker", lit)
	_, sinkerRefs := env(c.deployments["sinker"].Spec.Template.Spec.Containers[0])
	sinkerLit, _ := env(c.deployments["sinker"].Spec.Template.Spec.Containers[0])
	for name, v := range sinkerLit {
		if strings.HasPrefix(name, "ALUMINI_CLICKHOUSE_") && lit[name] != v {
			t.Errorf("Job %s: %s=%q; the sinker has %q", j.Name, name, lit[name], v)
		}
	}
	if ref, job := sinkerRefs["ALUMINI_CLICKHOUSE_PASSWORD"], refs["ALUMINI_CLICKHOUSE_PASSWORD"]; ref == nil || job == nil || ref.Name != job.Name || ref.Key != job.Key {
		t.Errorf("Job %s: the ClickHouse password is not the sinker's", j.Name)
	}
	c.checkSecurity("migrate", pod)
	c.checkFiles("sinker", pod, lit)
}

func duration(t *testing.T, svc string, env map[string]string, name string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(env[name])
	if err != nil {
		t.Errorf("%s: %s=%q: %v", svc, name, env[name], err)
	}
	return d
}

func checkListen(t *testing.T, svc, name, addr string, port int32) {
	t.Helper()
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Errorf("%s: %s=%q: %v", svc, name, addr, err)
		return
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		t.Errorf("%s: %s=%q is loopback: nothing outside the pod reaches it", svc, name, addr)
	}
	if p != fmt.Sprint(port) {
		t.Errorf("%s: %s=%q, but the container port is %d", svc, name, addr, port)
	}
}

// checkAdminServes asks the services' own admin handler for the probe's
// path: a path it does not serve would fail every probe.
func checkAdminServes(t *testing.T, path string) {
	t.Helper()
	rt := &service.Runtime{Name: "probe", Log: zap.NewNop(), Metrics: service.NewRegistry("probe"), Health: service.NewHealth()}
	rt.Health.Started()
	srv := httptest.NewServer(rt.AdminHandler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("admin handler GET %s = %d; want 200 from a started, healthy service", path, resp.StatusCode)
	}
}

// checkFiles: every file a flag names lies in a mounted volume; the
// registry is a whole-folder ConfigMap mount (a subPath mount never sees
// updates) holding a registry the services accept.
func (c *cluster) checkFiles(svc string, pod corev1.PodSpec, lit map[string]string) {
	t := c.t
	ctr := pod.Containers[0]
	volumes := map[string]corev1.Volume{}
	for _, v := range pod.Volumes {
		volumes[v.Name] = v
	}
	mountOf := func(file string) (corev1.VolumeMount, bool) {
		for _, m := range ctr.VolumeMounts {
			if path.Dir(file) == m.MountPath {
				return m, true
			}
		}
		return corev1.VolumeMount{}, false
	}
	for name, value := range lit {
		f := serviceFlags[svc][name]
		if !strings.HasSuffix(f.Name, "-file") && f.Name != "geo-db" || value == "" {
			continue
		}
		m, ok := mountOf(value)
		if !ok {
			t.Errorf("%s: %s=%s is in no mounted folder", svc, name, value)
			continue
		}
		if m.SubPath != "" {
			t.Errorf("%s: %s is mounted with subPath, which the kubelet never updates", svc, m.MountPath)
		}
		v, ok := volumes[m.Name]
		if !ok {
			t.Errorf("%s: mount %s names no volume", svc, m.Name)
			continue
		}
		if v.Secret != nil && len(v.Secret.Items) > 0 {
			t.Errorf("%s: volume %s picks items; the file names come from the Secret's keys", svc, v.Name)
		}
		if name != "ALUMINI_CLIENTS_FILE" {
			continue
		}
		if v.ConfigMap == nil {
			t.Errorf("%s: the client registry is not a ConfigMap volume", svc)
			continue
		}
		cm, ok := c.configMaps[v.ConfigMap.Name]
		if !ok {
			t.Errorf("%s: ConfigMap %s of the registry is not rendered", svc, v.ConfigMap.Name)
			continue
		}
		data, ok := cm.Data[path.Base(value)]
		if !ok {
			t.Errorf("%s: ConfigMap %s has no key %s", svc, cm.Name, path.Base(value))
			continue
		}
		if _, err := registry.Parse([]byte(data)); err != nil {
			t.Errorf("ConfigMap %s: the services would refuse the registry: %v", cm.Name, err)
		}
	}
}

// checkServices: each Service selects the pods of one Deployment and its
// target ports are ports of that Deployment's container.
func (c *cluster) checkServices() {
	t := c.t
	for _, s := range c.services {
		var matched []*appsv1.Deployment
		for _, d := range c.deployments {
			if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				matched = append(matched, d)
			}
		}
		if len(matched) != 1 {
			t.Errorf("Service %s selects %d Deployments; want 1", s.Name, len(matched))
			continue
		}
		for _, p := range s.Spec.Ports {
			if _, ok := containerPort(matched[0].Spec.Template.Spec.Containers[0], p.TargetPort.StrVal); !ok {
				t.Errorf("Service %s port %s targets %q, which %s's container lacks", s.Name, p.Name, p.TargetPort.String(), matched[0].Name)
			}
		}
	}
	for _, ing := range c.ingresses {
		for _, r := range ing.Spec.Rules {
			for _, p := range r.HTTP.Paths {
				if s := c.service(p.Backend.Service.Name); s == nil || !slices.ContainsFunc(s.Spec.Ports, func(sp corev1.ServicePort) bool { return sp.Name == p.Backend.Service.Port.Name }) {
					t.Errorf("Ingress %s goes to %s port %q, which is not rendered", ing.Name, p.Backend.Service.Name, p.Backend.Service.Port.Name)
				}
			}
		}
	}
}

func (c *cluster) service(name string) *corev1.Service {
	for _, s := range c.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func (c *cluster) deploymentNamed(name string) (string, *appsv1.Deployment) {
	for svc, d := range c.deployments {
		if d.Name == name {
			return svc, d
		}
	}
	return "", nil
}

// checkAutoscalers: each HPA scales a rendered Deployment that leaves its
// replicas to it; lag-scaled consumers never outnumber the partitions.
func (c *cluster) checkAutoscalers() {
	t := c.t
	for _, h := range c.hpas {
		svc, d := c.deploymentNamed(h.Spec.ScaleTargetRef.Name)
		if d == nil || h.Spec.ScaleTargetRef.Kind != "Deployment" {
			t.Errorf("HPA %s scales %s %s, which is not rendered", h.Name, h.Spec.ScaleTargetRef.Kind, h.Spec.ScaleTargetRef.Name)
			continue
		}
		if d.Spec.Replicas != nil {
			t.Errorf("Deployment %s sets replicas and has an HPA: every upgrade would reset the HPA's count", d.Name)
		}
		for _, m := range h.Spec.Metrics {
			if m.Type != autoscalingv2.ExternalMetricSourceType {
				continue
			}
			if want := "alumini_" + svc + "_consumer_lag_records"; m.External.Metric.Name != want {
				t.Errorf("HPA %s scales on %s; want %s", h.Name, m.External.Metric.Name, want)
			}
			lit, _ := env(d.Spec.Template.Spec.Containers[0])
			var partitions int32
			if _, err := fmt.Sscan(lit["ALUMINI_KAFKA_PARTITIONS"], &partitions); err != nil {
				t.Errorf("%s: ALUMINI_KAFKA_PARTITIONS=%q: %v", svc, lit["ALUMINI_KAFKA_PARTITIONS"], err)
			}
			if h.Spec.MaxReplicas > partitions {
				t.Errorf("HPA %s: maxReplicas %d above the %d partitions", h.Name, h.Spec.MaxReplicas, partitions)
			}
		}
	}
}

func (c *cluster) checkBudgets() {
	t := c.t
	for _, p := range c.pdbs {
		sel, err := metav1LabelSelector(p)
		if err != nil {
			t.Errorf("PDB %s: %v", p.Name, err)
			continue
		}
		n := 0
		for _, d := range c.deployments {
			if sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				n++
			}
		}
		if n != 1 {
			t.Errorf("PDB %s covers %d Deployments; want 1", p.Name, n)
		}
	}
}

func metav1LabelSelector(p *policyv1.PodDisruptionBudget) (labels.Selector, error) {
	if p.Spec.Selector == nil || len(p.Spec.Selector.MatchExpressions) > 0 {
		return nil, fmt.Errorf("want a selector of matchLabels")
	}
	return labels.SelectorFromSet(p.Spec.Selector.MatchLabels), nil
}

// checkMonitoring: the shipped dashboard and alert rules are the files in
// deploy/grafana and deploy/prometheus byte for byte, and Prometheus sees
// job="alumini-<service>" as the rules expect.
func (c *cluster) checkMonitoring() {
	t := c.t
	alerts, err := os.ReadFile("../prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	dashboard, err := os.ReadFile("../grafana/alumini.json")
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range c.configMaps {
		if data, ok := cm.Data["alerts.yml"]; ok && data != string(alerts) {
			t.Errorf("ConfigMap %s's alerts.yml differs from deploy/prometheus/alerts.yml", cm.Name)
		}
		if data, ok := cm.Data["alumini.json"]; ok && data != string(dashboard) {
			t.Errorf("ConfigMap %s's alumini.json differs from deploy/grafana/alumini.json", cm.Name)
		}
	}
	var file struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}
	if err := yaml.Unmarshal(alerts, &file); err != nil {
		t.Fatal(err)
	}
	for _, r := range c.rules {
		if len(r.Spec.Groups) != len(file.Groups) || len(r.Spec.Groups[0].Rules) != len(file.Groups[0].Rules) {
			t.Errorf("PrometheusRule %s: %d groups; want alerts.yml's %d with %d rules", r.Name, len(r.Spec.Groups), len(file.Groups), len(file.Groups[0].Rules))
		}
		for i, rule := range r.Spec.Groups[0].Rules {
			if want := file.Groups[0].Rules[i]; rule.Alert != want.Alert || rule.Expr.String() != want.Expr.String() {
				t.Errorf("PrometheusRule %s rule %d = %s %q; want %s %q", r.Name, i, rule.Alert, rule.Expr.String(), want.Alert, want.Expr.String())
			}
		}
	}
	for _, m := range c.monitors {
		sel := labels.SelectorFromSet(m.Spec.Selector.MatchLabels)
		for _, s := range c.services {
			if !sel.Matches(labels.Set(s.Labels)) {
				continue
			}
			svc := s.Labels["app.kubernetes.io/component"]
			if job := s.Labels[m.Spec.JobLabel]; job != "alumini-"+svc {
				t.Errorf("Service %s: job label %s=%q; the alert rules want alumini-%s", s.Name, m.Spec.JobLabel, job, svc)
			}
			for _, ep := range m.Spec.Endpoints {
				if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
					t.Errorf("ServiceMonitor %s scrapes port %q, which Service %s lacks", m.Name, ep.Port, s.Name)
				}
			}
		}
	}
	for svc, d := range c.deployments {
		if a := d.Spec.Template.Annotations; a["prometheus.io/scrape"] == "true" {
			port, _ := containerPort(d.Spec.Template.Spec.Containers[0], "admin")
			if a["prometheus.io/port"] != fmt.Sprint(port) || a["prometheus.io/path"] != "/metrics" {
				t.Errorf("%s: scrape annotations %v; want port %d path /metrics", svc, a, port)
			}
		}
	}
}

// checkSecretKeys: the Secret the chart makes holds every key a pod
// needs from it (optional keys aside).
func (c *cluster) checkSecretKeys() {
	t := c.t
	for svc, d := range c.deployments {
		_, refs := env(d.Spec.Template.Spec.Containers[0])
		for name, ref := range refs {
			s, made := c.secrets[ref.Name]
			if !made {
				continue // a Secret of the operator's own.
			}
			if _, ok := s.Data[ref.Key]; !ok && (ref.Optional == nil || !*ref.Optional) {
				t.Errorf("%s: %s comes from key %s of Secret %s, which lacks it", svc, name, ref.Key, s.Name)
			}
		}
	}
}

// TestChartRefuses: values the services could not run with fail the
// render with a message saying why.
func TestChartRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		vals map[string]any
		want string
	}{
		{"more consumers than partitions", map[string]any{
			"kafka":    map[string]any{"partitions": 4},
			"enricher": map[string]any{"autoscaling": map[string]any{"enabled": true, "maxReplicas": 8}},
		}, "enricher.autoscaling.maxReplicas (8) is above kafka.partitions (4)"},
		{"short visitor secret", map[string]any{
			"secrets": map[string]any{"create": true, "visitorSecret": "short"},
		}, "secrets.visitorSecret must be at least 32 characters"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := render(t, tc.vals); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("helm template = %v; want an error containing %q", err, tc.want)
			}
		})
	}
}

// TestChartPassesNumbersWhole: a number in the values reaches the service
// as the integer the flag parses, not in exponent form.
func TestChartPassesNumbersWhole(t *testing.T) {
	c := newCluster(t, objects(t, map[string]any{
		"collector": map[string]any{"flags": map[string]any{"max-body-bytes": float64(2097152)}}, // as a values file gives it
	}))
	lit, _ := env(c.deployments["collector"].Spec.Template.Spec.Containers[0])
	if got := lit["ALUMINI_MAX_BODY_BYTES"]; got != "2097152" {
		t.Errorf("ALUMINI_MAX_BODY_BYTES = %q; want 2097152", got)
	}
	if lit["ALUMINI_KAFKA_PARTITIONS"] != "6" {
		t.Errorf("ALUMINI_KAFKA_PARTITIONS = %q; want 6", lit["ALUMINI_KAFKA_PARTITIONS"])
	}
}
