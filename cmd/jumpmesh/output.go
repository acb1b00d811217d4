package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
)

// jsonFlag is on every command that prints something.
var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print JSON (errors too, with their catalog code)"}

// jsonRequested reports whether --json appears among the command's flags.
func jsonRequested(args []string) bool {
	for _, a := range args[1:] {
		if a == "--" {
			return false
		}
		if a == "--json" || a == "-json" || a == "--json=true" {
			return true
		}
	}
	return false
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// jsonError is the --json shape of an error.
type jsonError struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Detail  string `json:"detail,omitempty"`
	} `json:"error"`
}

func printJSONError(w io.Writer, err error) {
	var je jsonError
	code, message, detail := catalog.LocalErrorParts(err)
	je.Error.Code, je.Error.Message, je.Error.Detail = string(code), message, detail
	_ = printJSON(w, je)
}

// output prints v as JSON with --json, else calls text.
func output(cc *cli.Context, v any, text func(w io.Writer)) error {
	if cc.Bool("json") {
		return printJSON(cc.App.Writer, v)
	}
	text(cc.App.Writer)
	return nil
}

// table writes aligned columns; the first row is the header.
func table(w io.Writer, rows [][]string) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

// fields writes "key: value" lines with aligned values.
func fields(w io.Writer, kv ...string) {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i] == "" { // one more line of the field above
			fmt.Fprintf(tw, "\t%s\n", kv[i+1])
			continue
		}
		fmt.Fprintf(tw, "%s:\t%s\n", kv[i], kv[i+1])
	}
	tw.Flush()
}

// unixTime formats a stored Unix time for people; 0 is "never".
func unixTime(sec int64) string {
	if sec == 0 {
		return "never"
	}
	return time.Unix(sec, 0).UTC().Format("2006-01-02 15:04 UTC")
}

// jsonTime is the --json form of a stored Unix time (RFC 3339, omitted if 0).
func jsonTime(sec int64) string {
	if sec == 0 {
		return ""
	}
	return time.Unix(sec, 0).UTC().Format(time.RFC3339)
}

// humanTime turns an RFC 3339 time into the form unixTime prints.
func humanTime(rfc3339 string) string {
	t, err := time.Parse(time.RFC3339, rfc3339)
	if err != nil {
		return rfc3339
	}
	return unixTime(t.Unix())
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
