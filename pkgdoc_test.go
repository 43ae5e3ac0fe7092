package framesync

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackageDocs checks that every package of the module has exactly one
// package doc comment.
func TestPackageDocs(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			return nil
		}
		name := d.Name()
		if path != "." && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
			return filepath.SkipDir
		}
		entries, err := os.ReadDir(path)
		if err != nil {
			return err
		}
		docs := map[string][]string{} // package name -> files with a package doc
		for _, e := range entries {
			fn := e.Name()
			if e.IsDir() || !strings.HasSuffix(fn, ".go") || strings.HasSuffix(fn, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(path, fn), nil, parser.ParseComments|parser.PackageClauseOnly)
			if err != nil {
				return err
			}
			pkg := f.Name.Name
			if _, ok := docs[pkg]; !ok {
				docs[pkg] = nil
			}
			if f.Doc != nil {
				docs[pkg] = append(docs[pkg], fn)
			}
		}
		for pkg, files := range docs {
			if len(files) != 1 {
				t.Errorf("package %s (%s) has %d package doc comments %v, want exactly 1", pkg, path, len(files), files)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
