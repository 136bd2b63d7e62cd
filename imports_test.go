package main

// The import rules of STYLE.md ("Shape"), kept by one test in the way of
// tailscale's tstest/deptest and pebble's internal/lint: scoring, suspicion,
// consensus and the engine over them are deterministic cores (no network,
// gossip, storage, logging, clock, goroutines or global rand), and store is
// an edge that imports no other vigil package and takes no logger.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"go/types"
	"io"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/vigil-project/vigil"

// importRule is what one package may depend on and do. A pattern is an
// import path ("sync"), a path and everything below it ("log/..."), or a
// substring ("*zerolog*").
type importRule struct {
	pkg string // below module
	// banDeps may not appear among the package's transitive dependencies;
	// no other vigil package may either.
	banDeps []string
	// nonStd, if not nil, lists the only non-standard-library
	// dependencies allowed.
	nonStd []string
	// vigil lists the other vigil packages it may depend on (all pure).
	vigil []string
	// banImports may not be imported directly by a non-test file.
	banImports []string
	// pure: the non-test source must not read the clock, start timers or
	// goroutines, use the package-level math/rand functions, print or log.
	pure bool
}

var pureDeps = []string{
	"net/...", "golang.org/x/net/...", "log/...",
	"*memberlist*", "*serf*", "*bbolt*", "*zerolog*",
}

var importRules = []importRule{
	{pkg: "scoring", banDeps: pureDeps, nonStd: []string{"gonum.org/v1/gonum/..."},
		banImports: []string{"sync", "math/rand"}, pure: true},
	{pkg: "suspicion", banDeps: pureDeps, nonStd: []string{},
		banImports: []string{"sync", "os", "math/rand", "math/rand/v2"}, pure: true},
	{pkg: "consensus", banDeps: pureDeps, nonStd: []string{},
		banImports: []string{"sync"}, pure: true},
	// The engine is the whole agent's decisions over the three cores.
	{pkg: "engine", banDeps: pureDeps, nonStd: []string{"gonum.org/v1/gonum/...", module + "/..."},
		vigil: []string{"consensus", "scoring", "suspicion"}, banImports: []string{"sync", "os"}, pure: true},
	// bbolt itself imports log, so only store's own imports are held to
	// "no logger"; zerolog may not come in by any route.
	{pkg: "store", banDeps: []string{"*zerolog*"},
		banImports: []string{"log/...", "*zerolog*"}},
}

func matchPattern(pat, p string) bool {
	switch {
	case len(pat) > 2 && strings.HasPrefix(pat, "*") && strings.HasSuffix(pat, "*"):
		return strings.Contains(p, pat[1:len(pat)-1])
	case strings.HasSuffix(pat, "/..."):
		base := strings.TrimSuffix(pat, "/...")
		return p == base || strings.HasPrefix(p, base+"/")
	}
	return p == pat
}

func matchAny(pats []string, p string) bool {
	return slices.ContainsFunc(pats, func(pat string) bool { return matchPattern(pat, p) })
}

// depProblem says why r.pkg may not depend on dep, or returns "".
func depProblem(r importRule, dep string, std bool) string {
	switch {
	case matchAny(r.banDeps, dep):
		return "banned dependency " + dep
	case matchPattern(module+"/...", dep) && dep != module+"/"+r.pkg && !slices.Contains(r.vigil, strings.TrimPrefix(dep, module+"/")):
		return "depends on vigil package " + dep
	case !std && r.nonStd != nil && !matchAny(r.nonStd, dep) && dep != module+"/"+r.pkg:
		return "non-standard-library dependency " + dep
	}
	return ""
}

// Package-level functions of the pure packages' watch list. A *rand.Rand
// passed in is fine: of math/rand(/v2) only the constructors and types are
// allowed.
var (
	bannedTime = map[string]bool{
		"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true,
		"AfterFunc": true, "Tick": true, "NewTimer": true, "NewTicker": true,
	}
	allowedRand = map[string]bool{
		"New": true, "NewSource": true, "NewPCG": true, "NewChaCha8": true, "NewZipf": true,
		"Rand": true, "Source": true, "Source64": true, "PCG": true, "ChaCha8": true, "Zipf": true,
	}
	bannedFmt = map[string]bool{"Print": true, "Printf": true, "Println": true}
)

func watched(p string) bool {
	return p == "time" || p == "math/rand" || p == "math/rand/v2" || p == "fmt" ||
		matchPattern("log/...", p) || matchPattern("*zerolog*", p)
}

// useProblem says why a pure package may not use p.sel, or returns "".
func useProblem(p, sel string) string {
	bad := false
	switch {
	case p == "time":
		bad = bannedTime[sel]
	case p == "math/rand" || p == "math/rand/v2":
		bad = !allowedRand[sel]
	case p == "fmt":
		bad = bannedFmt[sel]
	case matchPattern("log/...", p) || matchPattern("*zerolog*", p):
		bad = true
	}
	if !bad {
		return ""
	}
	return fmt.Sprintf("uses %s.%s", p, sel)
}

// stubImporter hands out empty packages: type-checking with them resolves
// which identifier names which import (aliases, shadowing) without
// needing export data; the errors about missing members are ignored.
type stubImporter struct{}

func (stubImporter) Import(p string) (*types.Package, error) {
	name := path.Base(p)
	if dir, last := path.Split(p); dir != "" && len(last) > 1 && last[0] == 'v' {
		if _, err := strconv.Atoi(last[1:]); err == nil {
			name = path.Base(dir) // math/rand/v2 is rand
		}
	}
	pkg := types.NewPackage(p, name)
	pkg.MarkComplete()
	return pkg, nil
}

// sourceProblems checks the files of one package against r.
func sourceProblems(r importRule, fset *token.FileSet, files []*ast.File) []string {
	var probs []string
	add := func(pos token.Pos, msg string) {
		probs = append(probs, fmt.Sprintf("%s: %s", fset.Position(pos), msg))
	}
	for _, f := range files {
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if matchAny(r.banImports, p) {
				add(imp.Pos(), "imports "+p)
			}
			if r.pure && imp.Name != nil && imp.Name.Name == "." && watched(p) {
				add(imp.Pos(), "dot-imports "+p)
			}
		}
	}
	if !r.pure {
		return probs
	}
	info := &types.Info{Uses: map[*ast.Ident]types.Object{}}
	conf := types.Config{Importer: stubImporter{}, Error: func(error) {}}
	conf.Check(r.pkg, fset, files, info) // errors expected: the imports are stubs
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				add(n.Pos(), "go statement")
			case *ast.SelectorExpr:
				id, ok := n.X.(*ast.Ident)
				if !ok {
					break
				}
				if pn, ok := info.Uses[id].(*types.PkgName); ok {
					if msg := useProblem(pn.Imported().Path(), n.Sel.Name); msg != "" {
						add(n.Pos(), msg)
					}
				}
			}
			return true
		})
	}
	return probs
}

type listedPackage struct {
	ImportPath string
	Dir        string
	Standard   bool
	DepOnly    bool
	Deps       []string
}

// goListDeps runs `go list -deps -json` once for all the packages of
// importRules.
func goListDeps(t *testing.T) map[string]*listedPackage {
	t.Helper()
	// go test puts $GOROOT/bin first on PATH.
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	args := []string{"list", "-deps", "-json=ImportPath,Dir,Standard,DepOnly,Deps"}
	for _, r := range importRules {
		args = append(args, "./"+r.pkg)
	}
	cmd := exec.Command(gobin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.Bytes())
	}
	pkgs := map[string]*listedPackage{}
	for dec := json.NewDecoder(bytes.NewReader(out)); ; {
		p := new(listedPackage)
		if err := dec.Decode(p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("go list output: %v", err)
		}
		pkgs[p.ImportPath] = p
	}
	return pkgs
}

func parseDir(t *testing.T, fset *token.FileSet, dir string) []*ast.File {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	var files []*ast.File
	for _, name := range names {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatalf("no Go files in %s", dir)
	}
	return files
}

// TestImports keeps the pure packages pure and the store an edge.
func TestImports(t *testing.T) {
	pkgs := goListDeps(t)
	for _, r := range importRules {
		t.Run(r.pkg, func(t *testing.T) {
			self := module + "/" + r.pkg
			p := pkgs[self]
			if p == nil || p.DepOnly || p.Dir == "" {
				t.Fatalf("go list did not list %s", self)
			}
			// A list that is empty or not what go list means would pass
			// every rule.
			if !slices.Contains(p.Deps, "errors") || !slices.Contains(p.Deps, "runtime") {
				t.Fatalf("go list gave unexpected deps for %s: %q", self, p.Deps)
			}
			for _, d := range p.Deps {
				dp := pkgs[d]
				if dp == nil {
					t.Fatalf("go list -deps did not list %s, a dependency of %s", d, self)
				}
				if msg := depProblem(r, d, dp.Standard); msg != "" {
					t.Errorf("%s: %s", r.pkg, msg)
				}
			}
			fset := token.NewFileSet()
			for _, msg := range sourceProblems(r, fset, parseDir(t, fset, p.Dir)) {
				t.Error(msg)
			}
		})
	}
}

func ruleFor(t *testing.T, pkg string) importRule {
	t.Helper()
	for _, r := range importRules {
		if r.pkg == pkg {
			return r
		}
	}
	t.Fatalf("no import rule for %s", pkg)
	return importRule{}
}

// TestImportsChecker shows the checks of TestImports can fail: a checker
// that flags nothing would pass any package.
func TestImportsChecker(t *testing.T) {
	for _, tc := range []struct {
		pkg, dep string
		std, bad bool
	}{
		{"scoring", "net", true, true},
		{"scoring", "net/netip", true, true},
		{"suspicion", "net/http", true, true},
		{"consensus", "golang.org/x/net/ipv4", false, true},
		{"consensus", "log", true, true},
		{"suspicion", "log/slog", true, true},
		{"scoring", "github.com/hashicorp/memberlist", false, true},
		{"scoring", "github.com/hashicorp/serf/serf", false, true},
		{"consensus", "go.etcd.io/bbolt", false, true},
		{"suspicion", "github.com/rs/zerolog", false, true},
		{"consensus", module + "/scoring", false, true},
		{"suspicion", module + "/consensus", false, true},
		{"scoring", module + "/agent", false, true},
		{"scoring", module, false, true},
		{"scoring", "github.com/google/btree", false, true},
		{"suspicion", "gonum.org/v1/gonum/stat", false, true},
		{"consensus", "gonum.org/v1/gonum/mat", false, true},
		{"scoring", "gonum.org/v1/gonum/stat/distuv", false, false},
		{"scoring", "math", true, false},
		{"scoring", "time", true, false},
		{"suspicion", module + "/suspicion", false, false},
		{"consensus", "crypto/sha256", true, false},
		{"consensus", "sync", true, false}, // only a direct import is banned
		{"store", module + "/consensus", false, true},
		{"store", "github.com/rs/zerolog/log", false, true},
		{"store", "go.etcd.io/bbolt", false, false},
		{"store", "log", true, false},
		{"store", "net", true, false},
	} {
		if got := depProblem(ruleFor(t, tc.pkg), tc.dep, tc.std) != ""; got != tc.bad {
			t.Errorf("%s depending on %s: flagged=%v, want %v", tc.pkg, tc.dep, got, tc.bad)
		}
	}

	for _, tc := range []struct {
		pkg, src string
		bad      bool
	}{
		{"scoring", `import "time"; func f() { _ = time.Now() }`, true},
		{"scoring", `import "time"; func f(t time.Time) { _ = time.Since(t) }`, true},
		{"scoring", `import "time"; func f(t time.Time) { _ = time.Until(t) }`, true},
		{"suspicion", `import "time"; func f() { time.Sleep(1) }`, true},
		{"suspicion", `import "time"; func f() { <-time.After(1) }`, true},
		{"suspicion", `import "time"; func f() { time.AfterFunc(1, nil) }`, true},
		{"consensus", `import "time"; func f() { <-time.Tick(1) }`, true},
		{"consensus", `import "time"; func f() { time.NewTimer(1) }`, true},
		{"consensus", `import "time"; func f() { time.NewTicker(1) }`, true},
		{"consensus", `import "time"; var now = time.Now`, true},
		{"consensus", `import clock "time"; func f() { clock.Now() }`, true},
		{"consensus", `import . "time"; func f() { Now() }`, true},
		{"scoring", `func f() { go f() }`, true},
		{"suspicion", `func f() { go func() {}() }`, true},
		{"consensus", `import "math/rand"; func f() int { return rand.Intn(3) }`, true},
		{"consensus", `import "math/rand"; func f() float64 { return rand.Float64() }`, true},
		{"consensus", `import "math/rand"; func f() { rand.Seed(1) }`, true},
		{"scoring", `import "math/rand/v2"; func f() int { return rand.IntN(3) }`, true},
		{"scoring", `import "math/rand/v2"; func f() float64 { return rand.Float64() }`, true},
		{"scoring", `import r "math/rand/v2"; func f() { r.Shuffle(0, nil) }`, true},
		{"scoring", `import "math/rand"; var r *rand.Rand`, true}, // scoring: v2 only
		{"suspicion", `import "math/rand/v2"; var r *rand.Rand`, true},
		{"suspicion", `import "os"; var _ = os.Args`, true},
		{"scoring", `import "sync"; var mu sync.Mutex`, true},
		{"suspicion", `import "sync"; var mu sync.Mutex`, true},
		{"consensus", `import "sync"; var mu sync.Mutex`, true},
		{"consensus", `import "fmt"; func f() { fmt.Println("x") }`, true},
		{"consensus", `import "fmt"; func f() { fmt.Printf("x") }`, true},
		{"scoring", `import "fmt"; func f() { fmt.Print("x") }`, true},
		{"consensus", `import "log"; func f() { log.Printf("x") }`, true},
		{"suspicion", `import "log/slog"; func f() { slog.Info("x") }`, true},
		{"scoring", `import "github.com/rs/zerolog/log"; func f() { log.Info() }`, true},
		{"store", `import "log"; var _ = log.Printf`, true},
		{"store", `import "log/slog"; var _ = slog.Info`, true},
		{"store", `import "github.com/rs/zerolog"; var _ zerolog.Logger`, true},

		{"scoring", `import "time"; func f(d time.Duration) time.Time { return time.Time{}.Add(d) }`, false},
		{"scoring", `import "math/rand/v2"; func f(s uint64) *rand.Rand { return rand.New(rand.NewPCG(s, 0)) }`, false},
		{"scoring", `import "math/rand/v2"; func f(r *rand.Rand) int { return r.IntN(3) + int(r.Float64()) }`, false},
		{"scoring", `import "math/rand/v2"; func f(rand *rand.Rand) int { return rand.IntN(3) }`, false},
		{"consensus", `import "math/rand"; func f() *rand.Rand { return rand.New(rand.NewSource(1)) }`, false},
		{"consensus", `import "fmt"; func f() error { return fmt.Errorf("consensus: %s", fmt.Sprint(1)) }`, false},
		{"consensus", `type c struct{}; func (c) Now() int { return 0 }; func f(time c) int { return time.Now() }`, false},
		{"consensus", `import "sync/atomic"; var n atomic.Int64`, false},
		{"store", `import ("os"; "sync"; "time"); var _, _, _ = os.Args, sync.Mutex{}, time.Now`, false},
	} {
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, "x.go", "package x; "+tc.src, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("%q: %v", tc.src, err)
		}
		probs := sourceProblems(ruleFor(t, tc.pkg), fset, []*ast.File{f})
		if got := len(probs) > 0; got != tc.bad {
			t.Errorf("%s: %q: flagged=%v (%q), want %v", tc.pkg, tc.src, got, probs, tc.bad)
		}
	}
}
