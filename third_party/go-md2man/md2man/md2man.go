// Package md2man stands in for github.com/cpuguy83/go-md2man/v2/md2man in
// the jumpmesh binary (the replace in jumpmesh's go.mod).
//
// urfave/cli imports md2man for App.ToMan, which jumpmesh never calls
// (docs/cli.md is written by jumpmesh's own docs command). md2man imports
// blackfriday, whose package variables compile about 70 regular
// expressions: 0.5 ms and 210 kB of every jumpmesh process's start, a jump
// included (issue 17). Linking this package instead leaves blackfriday
// out; TestProcessInitBudget (cmd/jumpmesh) fails if it comes back.
package md2man

// Render returns doc as it is: no man page is made from Markdown here.
func Render(doc []byte) []byte { return doc }
