package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func renderDemo(t *testing.T, values string, extra ...string) (string, error) {
	t.Helper()
	dir := t.TempDir()
	f := filepath.Join(dir, "values.yaml")
	if err := os.WriteFile(f, []byte(values), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--name", "rel", "-n", "space", "-f", f}, extra...)
	var out bytes.Buffer
	err := run(append(args, "testdata/demo"), strings.NewReader(""), &out)
	return out.String(), err
}

// What `helm template rel testdata/demo -n space -f values.yaml` prints for this chart: every
// built-in object and Helm function the chart uses, values merged over the chart's defaults (a
// null deleting a key), objects sorted by kind in install order, NOTES.txt (rendered) and
// comment-only documents left out.
func TestRendersLikeHelmTemplate(t *testing.T) {
	got, err := renderDemo(t, "nested: {replace: mine, remove: null}\nlist: [c]\n")
	if err != nil {
		t.Fatal(err)
	}
	want := `---
# Source: demo/templates/configmap.yaml
apiVersion: v1
kind: Namespace
metadata:
  name: first-by-install-order
---
# Source: demo/templates/configmap.yaml
apiVersion: v1
kind: ConfigMap
metadata:
  name: demo-rel
  namespace: space
data:
  chart: "demo-1.2.3+build"
  appVersion: "4.5"
  service: Helm
  install: "true"
  kube: v1.33.0-1-33
  hasApps: "true"
  hasMonitoring: "false"
  template: demo/templates/configmap.yaml
  basePath: demo/templates
  tpl: "hello from rel"
  nested: "{\"keep\":\"kept\",\"replace\":\"mine\"}"
  yaml: |
    - c
  fromYaml: x
  fromYamlError: "true"
  fromJson: v
  missing: ""
  required: hello
  sprig: ABCABC
`
	if got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestCapabilitiesFromFlags(t *testing.T) {
	got, err := renderDemo(t, "", "--kube-version", "1.20.2", "--api-versions", "monitoring.coreos.com/v1")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"kube: v1.20.2-1-20", `hasMonitoring: "true"`} {
		if !strings.Contains(got, line) {
			t.Errorf("no %q in:\n%s", line, got)
		}
	}
}

func TestJSONOutputIsOneArrayOfObjects(t *testing.T) {
	got, err := renderDemo(t, "", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "[") || strings.Count(got, `"kind": "`) != 2 {
		t.Errorf("not a JSON array of two objects:\n%s", got)
	}
}

func TestErrorsAreHelmsMessages(t *testing.T) {
	for _, c := range []struct{ values, want string }{
		{"greeting: \"\"", "execution error at (demo/templates/configmap.yaml:24:15): greeting is required"},
		{"greeting: null", "greeting is required"},
		{"template: \"{{ fail \\\"stop here\\\" }}\"", "stop here"},
		{"template: \"{{ .Values.greeting\"", "cannot parse template"},
		{"notes: {text: \"\"}", "execution error at (demo/templates/NOTES.txt:1:19): notes.text is required"},
	} {
		_, err := renderDemo(t, c.values)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("values %q: error %v, want %q", c.values, err, c.want)
		}
	}
	_, err := renderDemo(t, "", "--kube-version", "v1.19.0")
	if err == nil || !strings.Contains(err.Error(), "chart requires kubeVersion: >=1.20.0-0 which is incompatible with Kubernetes v1.19.0") {
		t.Errorf("kubeVersion not checked: %v", err)
	}
}

func TestYAMLToJSON(t *testing.T) {
	var out bytes.Buffer
	if err := run([]string{"yaml2json", "testdata/demo/values.yaml"}, nil, &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"greeting": "hello"`) {
		t.Errorf("unexpected:\n%s", out.String())
	}
}
