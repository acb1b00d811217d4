// A stand-in for github.com/cpuguy83/go-md2man/v2, put in its place by the
// replace in jumpmesh's go.mod: see md2man/md2man.go.
module github.com/cpuguy83/go-md2man/v2

go 1.12
