package catalog_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestCatalogListsOnlyCodesSomethingReturns: every catalog code that is not
// reserved is named by non-test code outside catalog.go (so `jumpmesh
// errors` lists only errors a user can meet), and a reserved code is named
// by none (so a feature that starts returning one un-reserves it).
func TestCatalogListsOnlyCodesSomethingReturns(t *testing.T) {
	used := make(map[string]bool) // constant names referenced
	eachSourceFile(t, func(path string, _ *token.FileSet, f *ast.File) {
		if path == filepath.Join(root, "mesh", "catalog", "catalog.go") {
			return
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.SelectorExpr:
				if pkg, ok := x.X.(*ast.Ident); ok && pkg.Name == "catalog" {
					used[x.Sel.Name] = true
				}
			case *ast.Ident:
				if filepath.Dir(path) == filepath.Join(root, "mesh", "catalog") {
					used[x.Name] = true
				}
			}
			return true
		})
	})
	for name, c := range declaredCodes(t) {
		switch {
		case c.Reserved() && used[name]:
			t.Errorf("%s (%q) is reserved but something returns it: take it out of the reserved set", name, c)
		case !c.Reserved() && !used[name]:
			t.Errorf("%s (%q) is in the catalog but nothing returns it: use it, delete it, or mark it reserved", name, c)
		}
	}
}

// root is the module's root, from this package's directory.
var root = filepath.Join("..", "..")

// eachSourceFile parses every Go file of the module that is not a test
// (hidden, testdata and bin folders left out) and hands it to visit.
func eachSourceFile(t *testing.T, visit func(path string, fset *token.FileSet, f *ast.File)) {
	t.Helper()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != root && (strings.HasPrefix(n, ".") || n == "testdata" || n == "bin") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		visit(path, fset, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
