package catalog_test

import (
	"go/ast"
	"go/token"
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
	checked := 0
	defer func() {
		if checked < 100 {
			t.Errorf("checked %d error formats; the walk no longer finds the catalog's callers", checked)
		}
	}()
	eachSourceFile(t, func(path string, fset *token.FileSet, f *ast.File) {
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			var name string
			var format ast.Expr
			switch fn := call.Fun.(type) {
			case *ast.SelectorExpr:
				if pkg, ok := fn.X.(*ast.Ident); ok && pkg.Name == "catalog" {
					name = fn.Sel.Name
				}
			case *ast.Ident:
				if filepath.Dir(path) == filepath.Join(root, "mesh", "catalog") {
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
			checked++
			if strings.HasPrefix(s, "(") && !strings.HasSuffix(s, ")") {
				t.Errorf("%s: detail %q opens a parenthesis it does not close at its end", fset.Position(lit.Pos()), s)
			}
			return true
		})
	})
}
