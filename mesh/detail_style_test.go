package mesh_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDetailsInParenthesesClose: a catalog error's detail is either a
// sentence or one parenthesised remark after the message ("… offline.
// (last seen …)"). A detail that opens a parenthesis closes it at its end,
// with the cause inside: "(host: %w)", not "(host): %w".
func TestDetailsInParenthesesClose(t *testing.T) {
	root := ".."
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
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			var name string
			var format ast.Expr
			switch fn := call.Fun.(type) {
			case *ast.SelectorExpr:
				if pkg, ok := fn.X.(*ast.Ident); ok && pkg.Name == "mesh" {
					name = fn.Sel.Name
				}
			case *ast.Ident:
				if filepath.Base(filepath.Dir(path)) == "mesh" {
					name = fn.Name
				}
			}
			switch {
			case name == "Errorf" && len(call.Args) >= 2:
				format = call.Args[1]
			case name == "Internalf" && len(call.Args) >= 1:
				format = call.Args[0]
			default:
				return true
			}
			lit, ok := format.(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				return true // built from parts; not checked
			}
			s, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Fatalf("%s: %v", fset.Position(lit.Pos()), err)
			}
			if strings.HasPrefix(s, "(") && !strings.HasSuffix(s, ")") {
				t.Errorf("%s: detail %q opens a parenthesis it does not close at its end", fset.Position(lit.Pos()), s)
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
