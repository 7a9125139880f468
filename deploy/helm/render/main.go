// render: the chart's templates rendered the way `helm template` renders
// them — Go's text/template with the Sprig functions and Helm's own
// (include, toYaml, required, .Files.Get) — for checking the chart where
// the helm binary cannot be installed (deploy/check_chart.py uses it).
//
//	render [-f VALUES.yaml]... [-release NAME] [-namespace NS] CHART_DIR
//
// Prints every rendered manifest as one multi-document YAML stream.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"encoding/json"

	"github.com/Masterminds/sprig"
	"github.com/xeipuuv/gojsonschema"
	"gopkg.in/yaml.v3"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

// Files is .Files: the chart's own files, read by path.
type Files struct{ root string }

func (f Files) Get(name string) string {
	b, err := os.ReadFile(filepath.Join(f.root, name))
	if err != nil {
		return ""
	}
	return string(b)
}

// Glob is .Files.Glob: the chart's files matching a pattern, by path
// (ranging over the result visits them in path order, as Helm's does).
func (f Files) Glob(pattern string) map[string]string {
	out := map[string]string{}
	paths, _ := filepath.Glob(filepath.Join(f.root, pattern))
	for _, p := range paths {
		rel, err := filepath.Rel(f.root, p)
		if err == nil {
			out[rel] = f.Get(rel)
		}
	}
	return out
}

func readYAML(path string) (map[string]interface{}, error) {
	out := map[string]interface{}{}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// merge puts over's keys onto base, maps merged recursively (as helm -f does).
func merge(base, over map[string]interface{}) map[string]interface{} {
	for k, v := range over {
		if bm, ok := base[k].(map[string]interface{}); ok {
			if om, ok := v.(map[string]interface{}); ok {
				base[k] = merge(bm, om)
				continue
			}
		}
		base[k] = v
	}
	return base
}

// validate checks the merged values against the chart's values.schema.json,
// as helm does before rendering: a wrong type or an unknown key fails.
func validate(chart, name string, values map[string]interface{}) error {
	schema, err := os.ReadFile(filepath.Join(chart, "values.schema.json"))
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		return err
	}
	doc, err := json.Marshal(values)
	if err != nil {
		return err
	}
	res, err := gojsonschema.Validate(gojsonschema.NewBytesLoader(schema), gojsonschema.NewBytesLoader(doc))
	if err != nil {
		return fmt.Errorf("values.schema.json: %w", err)
	}
	if res.Valid() {
		return nil
	}
	var b strings.Builder
	fmt.Fprintf(&b, "values don't meet the specifications of the schema(s) in the following chart(s):\n%s:\n", name)
	for _, e := range res.Errors() {
		fmt.Fprintf(&b, "- %s\n", e)
	}
	return fmt.Errorf("%s", b.String())
}

func toYAML(v interface{}) string {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return ""
	}
	return strings.TrimSuffix(buf.String(), "\n")
}

func main() {
	var files valueFiles
	flag.Var(&files, "f", "values file (repeatable; later ones win)")
	release := flag.String("release", "pitwall", "release name")
	namespace := flag.String("namespace", "default", "namespace")
	notes := flag.Bool("notes", false, "print the rendered NOTES.txt instead of the manifests (helm install shows it)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: render [-f values.yaml]... CHART_DIR")
		os.Exit(2)
	}
	if err := run(flag.Arg(0), files, *release, *namespace, *notes); err != nil {
		fmt.Fprintln(os.Stderr, "render:", err)
		os.Exit(1)
	}
}

func run(chart string, files []string, release, namespace string, notes bool) error {
	meta, err := readYAML(filepath.Join(chart, "Chart.yaml"))
	if err != nil {
		return err
	}
	values, err := readYAML(filepath.Join(chart, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		over, err := readYAML(f)
		if err != nil {
			return err
		}
		values = merge(values, over)
	}
	name := fmt.Sprint(meta["name"])
	if err := validate(chart, name, values); err != nil {
		return err
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": map[string]interface{}{
			"Name": release, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Chart": map[string]interface{}{
			"Name": name, "Version": fmt.Sprint(meta["version"]),
			"AppVersion": fmt.Sprint(meta["appVersion"]),
		},
		"Files": Files{root: chart},
	}

	t := template.New("chart").Option("missingkey=zero")
	funcs := sprig.TxtFuncMap()
	funcs["toYaml"] = toYAML
	funcs["include"] = func(name string, data interface{}) (string, error) {
		var buf bytes.Buffer
		err := t.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil || v == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	t.Funcs(funcs)

	paths, err := filepath.Glob(filepath.Join(chart, "templates", "*"))
	if err != nil {
		return err
	}
	sort.Strings(paths)
	var manifests []string
	for _, p := range paths {
		base := filepath.Base(p)
		if !strings.HasSuffix(base, ".yaml") && !strings.HasSuffix(base, ".tpl") && base != "NOTES.txt" {
			continue
		}
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		tname := name + "/templates/" + base
		if _, err := t.New(tname).Parse(string(src)); err != nil {
			return err
		}
		if base == "NOTES.txt" {
			if notes {
				manifests = []string{tname}
			}
		} else if !strings.HasPrefix(base, "_") && !notes {
			manifests = append(manifests, tname)
		}
	}
	for _, m := range manifests {
		var buf bytes.Buffer
		if err := t.ExecuteTemplate(&buf, m, top); err != nil {
			return err
		}
		out := strings.ReplaceAll(buf.String(), "<no value>", "")
		if strings.TrimSpace(out) == "" {
			continue
		}
		if notes {
			fmt.Println(strings.TrimSpace(out))
			continue
		}
		fmt.Printf("---\n# Source: %s\n%s\n", m, strings.TrimSpace(out))
	}
	return nil
}
