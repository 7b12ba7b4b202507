// Command helm-render renders a Helm chart the way `helm template` does, for tests on machines
// where no helm binary can be had. It uses the same parts Helm is built from: Go's text/template,
// sprig's function map (minus env and expandenv, as in Helm) and sigs.k8s.io/yaml, plus Helm's own
// functions (include, tpl, required, fail, toYaml, fromYaml, fromYamlArray, toJson, fromJson,
// fromJsonArray, lookup) and its built-in objects (.Values, .Release, .Chart, .Capabilities,
// .Template). Not supported: .Files, subcharts and dependencies, values.schema.json, --set, toToml.
//
// Build it in GOPATH mode with Debian's packages (see hack/testenv.sh):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o helm-render ./tools/helm-render
//
// Usage:
//
//	helm-render [flags] CHART_DIR       render the chart, one YAML document per object
//	helm-render yaml2json FILE|DIR...   print the objects of YAML files as one JSON array
//
// Flags: -f/--values FILE (repeatable; "-" is stdin), --name, --namespace, --kube-version,
// --api-versions (repeatable), -o yaml|json.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/semver"
	"github.com/Masterminds/sprig"
	"sigs.k8s.io/yaml"
)

// Metadata is the part of Chart.yaml that templates see as .Chart (Helm's chart.Metadata).
type Metadata struct {
	Name         string            `json:"name"`
	Home         string            `json:"home,omitempty"`
	Sources      []string          `json:"sources,omitempty"`
	Version      string            `json:"version"`
	Description  string            `json:"description,omitempty"`
	Keywords     []string          `json:"keywords,omitempty"`
	Icon         string            `json:"icon,omitempty"`
	APIVersion   string            `json:"apiVersion"`
	AppVersion   string            `json:"appVersion,omitempty"`
	KubeVersion  string            `json:"kubeVersion,omitempty"`
	Type         string            `json:"type,omitempty"`
	Annotations  map[string]string `json:"annotations,omitempty"`
	Deprecated   bool              `json:"deprecated,omitempty"`
	Dependencies []interface{}     `json:"dependencies,omitempty"`
}

// KubeVersion is .Capabilities.KubeVersion.
type KubeVersion struct {
	Version string
	Major   string
	Minor   string
}

func (k KubeVersion) String() string     { return k.Version }
func (k KubeVersion) GitVersion() string { return k.Version }

// VersionSet is .Capabilities.APIVersions.
type VersionSet []string

// Has reports whether an API group/version (or group/version/Kind) is available.
func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

// Capabilities is .Capabilities.
type Capabilities struct {
	KubeVersion KubeVersion
	APIVersions VersionSet
	HelmVersion map[string]string
}

// The API versions every supported cluster serves; --api-versions adds to them.
var defaultAPIVersions = []string{
	"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v1", "networking.k8s.io/v1",
	"rbac.authorization.k8s.io/v1", "coordination.k8s.io/v1", "events.k8s.io/v1",
	"apiextensions.k8s.io/v1", "admissionregistration.k8s.io/v1", "storage.k8s.io/v1",
}

// Helm's install order: `helm template` prints objects sorted by kind in this order.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
	"PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
	"ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
	"CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
	"ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
	"DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
	"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
	"APIService",
}

const recursionMax = 1000

type multiFlag []string

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}

func run(args []string, stdin io.Reader, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "yaml2json" {
		return yamlToJSON(args[1:], stdout)
	}
	var values, apiVersions multiFlag
	name, namespace, kubeVersion, output, chartDir := "release-name", "default", "v1.33.0", "yaml", ""
	for i := 0; i < len(args); i++ {
		flag, value, inline := strings.Cut(args[i], "=")
		next := func() (string, error) {
			if inline {
				return value, nil
			}
			if i+1 >= len(args) {
				return "", fmt.Errorf("flag %s needs a value", flag)
			}
			i++
			return args[i], nil
		}
		var err error
		var v string
		switch flag {
		case "-f", "--values":
			v, err = next()
			values = append(values, v)
		case "--name":
			name, err = next()
		case "-n", "--namespace":
			namespace, err = next()
		case "--kube-version":
			kubeVersion, err = next()
		case "--api-versions":
			v, err = next()
			apiVersions = append(apiVersions, v)
		case "-o", "--output":
			output, err = next()
		default:
			if strings.HasPrefix(flag, "-") {
				return fmt.Errorf("unknown flag %s", flag)
			}
			if chartDir != "" {
				return fmt.Errorf("one chart directory expected, got %s and %s", chartDir, flag)
			}
			chartDir = args[i]
		}
		if err != nil {
			return err
		}
	}
	if chartDir == "" {
		return errors.New("usage: helm-render [-f values.yaml]... [--name N] [--namespace NS] [--kube-version V] [-o yaml|json] CHART_DIR")
	}
	if output != "yaml" && output != "json" {
		return fmt.Errorf("--output must be yaml or json, not %q", output)
	}
	docs, err := render(chartDir, values, stdin, name, namespace, kubeVersion, apiVersions)
	if err != nil {
		return err
	}
	if output == "json" {
		return writeJSON(docs, stdout)
	}
	for _, d := range docs {
		fmt.Fprintf(stdout, "---\n# Source: %s\n%s\n", d.source, d.text)
	}
	return nil
}

type doc struct {
	source, kind, text string
}

func render(chartDir string, valueFiles []string, stdin io.Reader, name, namespace, kubeVersion string, extraAPIs []string) ([]doc, error) {
	var meta Metadata
	if err := readYAML(filepath.Join(chartDir, "Chart.yaml"), &meta); err != nil {
		return nil, err
	}
	if meta.APIVersion == "" || meta.Name == "" || meta.Version == "" {
		return nil, errors.New("Chart.yaml: apiVersion, name and version are required")
	}
	caps, err := capabilities(kubeVersion, extraAPIs)
	if err != nil {
		return nil, err
	}
	if meta.KubeVersion != "" {
		c, err := semver.NewConstraint(meta.KubeVersion)
		if err != nil {
			return nil, fmt.Errorf("Chart.yaml: kubeVersion %q: %w", meta.KubeVersion, err)
		}
		if !c.Check(semver.MustParse(caps.KubeVersion.Version)) {
			return nil, fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s", meta.KubeVersion, caps.KubeVersion.Version)
		}
	}

	vals := map[string]interface{}{}
	if err := readYAML(filepath.Join(chartDir, "values.yaml"), &vals); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	for _, f := range valueFiles {
		var user map[string]interface{}
		var data []byte
		if f == "-" {
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(f)
		}
		if err != nil {
			return nil, err
		}
		if err := yaml.Unmarshal(data, &user); err != nil {
			return nil, fmt.Errorf("values %s: %w", f, err)
		}
		vals = coalesce(user, vals)
	}
	top := map[string]interface{}{
		"Values":       vals,
		"Chart":        meta,
		"Capabilities": caps,
		"Release": map[string]interface{}{
			"Name": name, "Namespace": namespace, "Revision": 1, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false,
		},
	}

	templates, err := loadTemplates(chartDir, meta.Name)
	if err != nil {
		return nil, err
	}
	rendered, err := execute(templates, top)
	if err != nil {
		return nil, err
	}
	return splitAndSort(rendered, templates)
}

func capabilities(kubeVersion string, extra []string) (Capabilities, error) {
	v, err := semver.NewVersion(kubeVersion)
	if err != nil {
		return Capabilities{}, fmt.Errorf("--kube-version %q: %w", kubeVersion, err)
	}
	apis := append(VersionSet{}, defaultAPIVersions...)
	apis = append(apis, extra...)
	return Capabilities{
		KubeVersion: KubeVersion{
			Version: "v" + v.String(),
			Major:   fmt.Sprint(v.Major()),
			Minor:   fmt.Sprint(v.Minor()),
		},
		APIVersions: apis,
		HelmVersion: map[string]string{"version": "v3", "go_version": "helm-render"},
	}, nil
}

// coalesce merges user values over chart defaults as Helm does: maps merge key by key, any other
// value replaces the default, and a null removes the key.
func coalesce(user, defaults map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range defaults {
		out[k] = v
	}
	for k, v := range user {
		if v == nil {
			delete(out, k)
			continue
		}
		um, uok := v.(map[string]interface{})
		dm, dok := out[k].(map[string]interface{})
		if uok && dok {
			out[k] = coalesce(um, dm)
		} else {
			out[k] = v
		}
	}
	return out
}

type tmpl struct {
	name, text string
}

// loadTemplates reads templates/ as Helm names them (chart/templates/file), sorted by path depth,
// deepest first, then by name.
func loadTemplates(chartDir, chartName string) ([]tmpl, error) {
	var out []tmpl
	root := filepath.Join(chartDir, "templates")
	err := filepath.Walk(root, func(p string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(chartDir, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out = append(out, tmpl{name: path.Join(chartName, filepath.ToSlash(rel)), text: string(data)})
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool {
		di, dj := strings.Count(out[i].name, "/"), strings.Count(out[j].name, "/")
		if di != dj {
			return di > dj
		}
		return out[i].name < out[j].name
	})
	return out, err
}

func funcMap() template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	f["toYaml"] = func(v interface{}) string {
		data, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(data), "\n")
	}
	yamlDecode := func(data []byte, v interface{}) error { return yaml.Unmarshal(data, v) }
	f["fromYaml"] = decodeMap(yamlDecode)
	f["fromYamlArray"] = decodeArray(yamlDecode)
	f["fromJson"] = decodeMap(json.Unmarshal)
	f["fromJsonArray"] = decodeArray(json.Unmarshal)
	f["toJson"] = func(v interface{}) string {
		data, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(data)
	}
	// As under `helm template`: there is no cluster to look anything up in.
	f["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	// Helm marks messages from required and fail so that the error it reports is the message.
	f["required"] = func(warn string, val interface{}) (interface{}, error) {
		if val == nil {
			return val, errors.New(errStart + warn + errEnd)
		}
		if s, ok := val.(string); ok && s == "" {
			return val, errors.New(errStart + warn + errEnd)
		}
		return val, nil
	}
	f["fail"] = func(msg string) (string, error) {
		return "", errors.New(errStart + msg + errEnd)
	}
	return f
}

// decodeMap and decodeArray make Helm's from* functions: on a parse error, a map holds the
// message under "Error" and an array holds it as its only element.
func decodeMap(decode func([]byte, interface{}) error) func(string) map[string]interface{} {
	return func(s string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := decode([]byte(s), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
}

func decodeArray(decode func([]byte, interface{}) error) func(string) []interface{} {
	return func(s string) []interface{} {
		a := []interface{}{}
		if err := decode([]byte(s), &a); err != nil {
			a = []interface{}{err.Error()}
		}
		return a
	}
}

const (
	errStart = "HELM_ERR_START"
	errEnd   = "HELM_ERR_END"
)

// includeFun and tplFun close over the template set they run in, as Helm's do.
func includeFun(t *template.Template, depth map[string]int) func(string, interface{}) (string, error) {
	return func(name string, data interface{}) (string, error) {
		if depth[name] > recursionMax {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		depth[name]++
		defer func() { depth[name]-- }()
		var buf strings.Builder
		err := t.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
}

func tplFun(parent *template.Template, depth map[string]int) func(string, interface{}) (string, error) {
	return func(text string, vals interface{}) (string, error) {
		t, err := parent.Clone()
		if err != nil {
			return "", fmt.Errorf("cannot clone template: %w", err)
		}
		t.Option("missingkey=zero")
		t.Funcs(template.FuncMap{"include": includeFun(t, depth), "tpl": tplFun(t, depth)})
		t, err = t.New(parent.Name()).Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %w", text, err)
		}
		var buf strings.Builder
		if err := t.Execute(&buf, vals); err != nil {
			return "", fmt.Errorf("error during tpl function execution for %q: %w", text, err)
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
}

func execute(templates []tmpl, top map[string]interface{}) (map[string]string, error) {
	t := template.New("gotpl")
	t.Option("missingkey=zero")
	depth := map[string]int{}
	funcs := funcMap()
	funcs["include"] = includeFun(t, depth)
	funcs["tpl"] = tplFun(t, depth)
	t.Funcs(funcs)
	for _, tp := range templates {
		if _, err := t.New(tp.name).Parse(tp.text); err != nil {
			return nil, fmt.Errorf("parse error in %s: %w", tp.name, err)
		}
	}
	out := map[string]string{}
	for _, tp := range templates {
		if strings.HasPrefix(path.Base(tp.name), "_") {
			continue
		}
		vals := map[string]interface{}{}
		for k, v := range top {
			vals[k] = v
		}
		vals["Template"] = map[string]interface{}{"Name": tp.name, "BasePath": path.Dir(tp.name)}
		var buf strings.Builder
		if err := t.ExecuteTemplate(&buf, tp.name, vals); err != nil {
			return nil, cleanExecError(tp.name, err)
		}
		out[tp.name] = strings.ReplaceAll(buf.String(), "<no value>", "")
	}
	return out, nil
}

// cleanExecError turns a required/fail error into Helm's "execution error at (file:line:col): msg".
func cleanExecError(name string, err error) error {
	msg := err.Error()
	start, end := strings.Index(msg, errStart), strings.Index(msg, errEnd)
	if start < 0 || end < start {
		return err
	}
	loc := name
	if m := regexp.MustCompile(`template: ([^:]+:\d+:\d+)`).FindStringSubmatch(msg); m != nil {
		loc = m[1]
	}
	return fmt.Errorf("execution error at (%s): %s", loc, msg[start+len(errStart):end])
}

var separator = regexp.MustCompile(`(?:^|\s*\n)---\s*`)

func splitAndSort(rendered map[string]string, templates []tmpl) ([]doc, error) {
	var docs []doc
	// Files in name order, as Helm does before sorting by kind.
	names := make([]string, 0, len(rendered))
	for n := range rendered {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		// Rendered like the others, so that its errors fail the install, but not a manifest.
		if path.Base(n) == "NOTES.txt" {
			continue
		}
		for _, text := range separator.Split(rendered[n], -1) {
			if strings.TrimSpace(text) == "" {
				continue
			}
			var head struct {
				Kind string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(text), &head); err != nil {
				return nil, fmt.Errorf("%s: rendered YAML does not parse: %w\n%s", n, err, text)
			}
			if head.Kind == "" {
				// Comments only, or an object without a kind: Helm rejects the latter.
				var any interface{}
				_ = yaml.Unmarshal([]byte(text), &any)
				if any == nil {
					continue
				}
				return nil, fmt.Errorf("%s: object has no kind:\n%s", n, text)
			}
			docs = append(docs, doc{source: n, kind: head.Kind, text: strings.TrimSpace(text)})
		}
	}
	rank := func(kind string) int {
		for i, k := range installOrder {
			if k == kind {
				return i
			}
		}
		return len(installOrder)
	}
	sort.SliceStable(docs, func(i, j int) bool { return rank(docs[i].kind) < rank(docs[j].kind) })
	return docs, nil
}

func writeJSON(docs []doc, w io.Writer) error {
	objects := []json.RawMessage{}
	for _, d := range docs {
		data, err := yaml.YAMLToJSON([]byte(d.text))
		if err != nil {
			return fmt.Errorf("%s: %w", d.source, err)
		}
		objects = append(objects, data)
	}
	out, err := json.MarshalIndent(objects, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(out, '\n'))
	return err
}

// yamlToJSON prints the objects of YAML files (a directory: its *.yaml and *.yml files, in name
// order, not recursing) as one JSON array.
func yamlToJSON(paths []string, w io.Writer) error {
	var docs []doc
	for _, p := range paths {
		files := []string{p}
		if info, err := os.Stat(p); err != nil {
			return err
		} else if info.IsDir() {
			entries, err := os.ReadDir(p)
			if err != nil {
				return err
			}
			files = files[:0]
			for _, e := range entries {
				if !e.IsDir() && (strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), ".yml")) {
					files = append(files, filepath.Join(p, e.Name()))
				}
			}
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			for _, text := range separator.Split(string(data), -1) {
				var any interface{}
				if err := yaml.Unmarshal([]byte(text), &any); err != nil {
					return fmt.Errorf("%s: %w", f, err)
				}
				if any != nil {
					docs = append(docs, doc{source: f, text: text})
				}
			}
		}
	}
	return writeJSON(docs, w)
}

func readYAML(p string, into interface{}) error {
	data, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(bytes.TrimSpace(data), into); err != nil {
		return fmt.Errorf("%s: %w", p, err)
	}
	return nil
}
