package main

import (
	"bytes"
	"context"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// TestEveryCommandHasUsageAndExample walks the command tree: every command
// says what it does, and every leaf shows at least one example.
func TestEveryCommandHasUsageAndExample(t *testing.T) {
	app := newApp(new(bytes.Buffer), new(bytes.Buffer))
	var walk func(path string, cmds []*cli.Command)
	walk = func(path string, cmds []*cli.Command) {
		for _, c := range cmds {
			name := path + " " + c.Name
			if c.Usage == "" {
				t.Errorf("%s: no usage text", name)
			}
			if len(c.Subcommands) > 0 {
				walk(name, c.Subcommands)
				continue
			}
			if !strings.Contains(c.UsageText, "Example") || !strings.Contains(c.UsageText, "jumpmesh ") {
				t.Errorf("%s: no example in its usage text", name)
			}
			for _, f := range c.Flags {
				if df, ok := f.(cli.DocGenerationFlag); ok && df.GetUsage() == "" {
					t.Errorf("%s --%s: no usage text", name, f.Names()[0])
				}
			}
		}
	}
	walk("jumpmesh", app.Commands)
}

// TestHelpRunsForEveryCommand asks each command for --help through run().
func TestHelpRunsForEveryCommand(t *testing.T) {
	app := newApp(new(bytes.Buffer), new(bytes.Buffer))
	var walk func(path []string, cmds []*cli.Command)
	walk = func(path []string, cmds []*cli.Command) {
		for _, c := range cmds {
			args := append(append([]string{"jumpmesh"}, path...), c.Name, "--help")
			var out, errb bytes.Buffer
			if code := run(context.Background(), args, &out, &errb); code != 0 || !strings.Contains(out.String(), c.Name) {
				t.Errorf("%s: exit %d, stderr %q", strings.Join(args, " "), code, errb.String())
			}
			walk(append(path, c.Name), c.Subcommands)
		}
	}
	walk(nil, app.Commands)
}

// TestEveryPackageHasADocComment checks the whole module.
func TestEveryPackageHasADocComment(t *testing.T) {
	root := filepath.Join("..", "..")
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "bin") {
			return filepath.SkipDir
		}
		// Package name -> whether one of its files has a doc comment.
		documented := map[string]bool{}
		files, err := filepath.Glob(filepath.Join(path, "*.go"))
		if err != nil {
			return err
		}
		fset := token.NewFileSet()
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(fset, file, nil, parser.ParseComments|parser.PackageClauseOnly)
			if err != nil {
				return err
			}
			name := f.Name.Name
			documented[name] = documented[name] || (f.Doc != nil && strings.TrimSpace(f.Doc.Text()) != "")
		}
		for name, ok := range documented {
			if !ok {
				t.Errorf("package %s in %s has no doc comment", name, path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found: %v", err)
	}
}
