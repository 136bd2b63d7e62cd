package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/vigil-project/vigil/agent"
)

// The Grafana dashboard under deploy/ is valid JSON whose every query
// names metrics vigil exports.
func TestGrafanaDashboardUsesRealMetrics(t *testing.T) {
	b, err := os.ReadFile("deploy/grafana/vigil-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	known := agent.MetricNames()
	if len(known) < 15 {
		t.Fatalf("MetricNames: %v", known)
	}
	used := map[string]bool{}
	name := regexp.MustCompile(`vigil_[a-z_]+`)
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				base := n
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					base = strings.TrimSuffix(base, suf)
				}
				if !slices.Contains(known, base) {
					t.Errorf("panel %q queries %s, which vigil does not export", p.Title, n)
				}
				used[base] = true
			}
		}
	}
	for _, n := range known {
		if !used[n] {
			t.Errorf("no panel shows %s", n)
		}
	}
}

// systemdAnalyze is systemd's unit checker; `make testdeps` installs it
// (Debian's systemd) where it can.
func systemdAnalyze(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("systemd-analyze")
	if err == nil {
		return p
	}
	if os.Getuid() == 0 {
		t.Fatal("no systemd-analyze: run make testdeps (it installs Debian's systemd)")
	}
	t.Skip("no systemd-analyze, and not root to install it")
	return ""
}

// The systemd units pass `systemd-analyze verify`; the only complaint
// allowed is that vigil is not installed at /usr/local/bin on this machine.
func TestSystemdUnitsVerify(t *testing.T) {
	bin := systemdAnalyze(t)
	units, _ := filepath.Glob("deploy/systemd/*.service")
	if len(units) < 2 {
		t.Fatalf("units: %v", units)
	}
	out, _ := exec.Command(bin, append([]string{"verify", "--man=no"}, units...)...).CombinedOutput()
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" || strings.Contains(line, "Command /usr/local/bin/vigil is not executable") {
			continue
		}
		t.Errorf("systemd-analyze verify: %s", line)
	}
	unit, _ := os.ReadFile("deploy/systemd/vigil.service")
	for _, want := range []string{"Type=notify", "WatchdogSec=", "ExecReload=/bin/kill -HUP $MAINPID", "ProtectSystem="} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("vigil.service lacks %s", want)
		}
	}
	app, _ := os.ReadFile("deploy/systemd/protected-app.service")
	if !strings.Contains(string(app), "BindsTo=vigil.service") {
		t.Error("the protected service is not bound to the agent")
	}
	// The example settings are a valid config file.
	b, err := os.ReadFile("deploy/systemd/agent.json")
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	for k := range v {
		found := false
		for _, s := range agent.Settings() {
			found = found || s.Key == k
		}
		if !found {
			t.Errorf("agent.json: %q is not a setting", k)
		}
	}
}

// The Dockerfile, linted by the rules of hadolint that apply here: pinned
// base images, a static build, a non-root user, exec-form commands, the
// ports, a health check; the Go of the build image is go.mod's.
func TestDockerfileLint(t *testing.T) {
	b, err := os.ReadFile("deploy/docker/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	mod, _ := os.ReadFile("go.mod")
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(string(mod))
	var lines []string
	for _, l := range strings.Split(strings.ReplaceAll(string(b), "\\\n", " "), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	var froms []string
	user, expose, health := "", "", false
	for _, l := range lines {
		instr, rest, _ := strings.Cut(l, " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			img := strings.Fields(rest)[0]
			froms = append(froms, img)
			if !strings.Contains(img, ":") || strings.HasSuffix(img, ":latest") {
				t.Errorf("FROM %s: pin the image's tag (DL3006, DL3007)", img)
			}
			user = "" // USER is per stage
		case "USER":
			user = rest
		case "ADD":
			t.Errorf("ADD %s: use COPY (DL3020)", rest)
		case "ENTRYPOINT", "CMD":
			if !strings.HasPrefix(rest, "[") {
				t.Errorf("%s %s: use the exec form (DL3025)", instr, rest)
			}
		case "HEALTHCHECK":
			health = true
			if i := strings.Index(rest, "CMD "); i < 0 || !strings.HasPrefix(rest[i+4:], "[") {
				t.Errorf("HEALTHCHECK %s: use CMD in exec form", rest)
			}
		case "EXPOSE":
			expose += " " + rest + " "
		case "RUN":
			if strings.Contains(rest, "go build") && !strings.Contains(rest, "CGO_ENABLED=0") {
				t.Errorf("RUN %s: build a static binary (CGO_ENABLED=0)", rest)
			}
			if strings.Contains(rest, "apt-get install") || strings.Contains(rest, "apk add") && !strings.Contains(rest, "--no-cache") {
				t.Errorf("RUN %s: no package caches in the image (DL3019)", rest)
			}
		}
	}
	if len(froms) < 2 || goVer == nil || !strings.HasPrefix(froms[0], "golang:"+goVer[1]) {
		t.Errorf("stages %v: want a golang:%v build stage, then a small image", froms, goVer)
	}
	if uid, _, _ := strings.Cut(user, ":"); user == "" || uid == "0" || uid == "root" {
		t.Errorf("the image runs as %q: want a non-root USER (DL3002)", user)
	}
	for _, p := range []string{"7946/tcp", "7946/udp", "7947/tcp", "7373/tcp"} {
		if !strings.Contains(expose, " "+p+" ") {
			t.Errorf("EXPOSE lacks %s", p)
		}
	}
	if !health {
		t.Error("no HEALTHCHECK")
	}
}

// The Kubernetes manifests decode strictly into the Kubernetes API types
// (an unknown or misspelt field, or a value of the wrong type, fails), and
// hang together: the headless service governs the StatefulSet, its DNS
// names are the seeds, --bootstrap-expect is the replica count.
func TestKubernetesManifests(t *testing.T) {
	b, err := os.ReadFile("deploy/kubernetes/vigil.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var svc *corev1.Service
	var sts *appsv1.StatefulSet
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var meta struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatal(err)
		}
		switch meta.APIVersion + "/" + meta.Kind {
		case "v1/Service":
			svc = &corev1.Service{}
			err = yaml.UnmarshalStrict([]byte(doc), svc)
		case "apps/v1/StatefulSet":
			sts = &appsv1.StatefulSet{}
			err = yaml.UnmarshalStrict([]byte(doc), sts)
		default:
			t.Fatalf("unexpected %s %s", meta.APIVersion, meta.Kind)
		}
		if err != nil {
			t.Fatalf("%s: %v", meta.Kind, err)
		}
	}
	if svc == nil || sts == nil {
		t.Fatal("want a Service and a StatefulSet")
	}
	if svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses || sts.Spec.ServiceName != svc.Name {
		t.Errorf("the service must be headless, publish unready pods and govern the set: %+v", svc.Spec)
	}
	sel := sts.Spec.Selector.MatchLabels
	for k, v := range sel {
		if svc.Spec.Selector[k] != v || sts.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match", k, v)
		}
	}
	replicas := int(*sts.Spec.Replicas)
	c := sts.Spec.Template.Spec.Containers[0]
	args := strings.Join(c.Args, " ")
	if !strings.Contains(args, fmt.Sprintf("--bootstrap-expect=%d", replicas)) {
		t.Errorf("--bootstrap-expect is not the %d replicas: %s", replicas, args)
	}
	for i := range replicas {
		seed := fmt.Sprintf("--retry-join=%s-%d.%s.", sts.Name, i, svc.Name)
		if !strings.Contains(args, seed) {
			t.Errorf("no seed %s in %s", seed, args)
		}
	}
	for _, a := range c.Args {
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		found := false
		for _, s := range agent.Settings() {
			found = found || s.Name == name
		}
		if !found {
			t.Errorf("argument %s is not an agent flag", a)
		}
	}
	ports := map[string]bool{}
	for _, p := range c.Ports {
		ports[fmt.Sprintf("%d/%s", p.ContainerPort, p.Protocol)] = true
	}
	if !ports["7946/TCP"] || !ports["7946/UDP"] || !ports["7947/TCP"] {
		t.Errorf("container ports %v", ports)
	}
	if len(sts.Spec.VolumeClaimTemplates) == 0 {
		t.Error("no volume for the data dir")
	}
}
