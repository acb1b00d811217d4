package catalog_test

import (
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/jumpmesh/jumpmesh/mesh/catalog"
	"github.com/jumpmesh/jumpmesh/mesh/pb"
)

var snakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// declaredCodes reads the Code constants declared in the package's source, so
// the test also catches a constant that was declared but never given a
// message (Codes() only lists the catalog) or two constants with one value.
func declaredCodes(t *testing.T) map[string]catalog.Code {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	out := make(map[string]catalog.Code)
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gen, ok := decl.(*ast.GenDecl)
			if !ok || gen.Tok != token.CONST {
				continue
			}
			for _, spec := range gen.Specs {
				vs := spec.(*ast.ValueSpec)
				if typ, ok := vs.Type.(*ast.Ident); !ok || typ.Name != "Code" {
					continue
				}
				for i, id := range vs.Names {
					lit, ok := vs.Values[i].(*ast.BasicLit)
					if !ok || lit.Kind != token.STRING {
						t.Errorf("%s: constant %s is not a string literal", fset.Position(id.Pos()), id.Name)
						continue
					}
					v, err := strconv.Unquote(lit.Value)
					if err != nil {
						t.Fatal(err)
					}
					out[id.Name] = catalog.Code(v)
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("found no Code constants; is the test running in the mesh directory?")
	}
	return out
}

func TestCatalogComplete(t *testing.T) {
	declared := declaredCodes(t)
	codes := catalog.Codes()
	byValue := make(map[catalog.Code]string)
	for name, c := range declared {
		if other, dup := byValue[c]; dup {
			t.Errorf("%s and %s are both %q", name, other, c)
		}
		byValue[c] = name
		if !c.Known() {
			t.Errorf("%s (%q) has no catalog message", name, c)
		}
		if !slices.Contains(codes, c) {
			t.Errorf("%s (%q) missing from Codes()", name, c)
		}
	}
	for _, c := range codes {
		if _, ok := byValue[c]; !ok {
			t.Errorf("catalog code %q has no constant", c)
		}
	}
}

func TestCatalogMessages(t *testing.T) {
	codes := catalog.Codes()
	if !slices.IsSorted(codes) {
		t.Errorf("Codes() not sorted: %v", codes)
	}
	if len(slices.Compact(slices.Clone(codes))) != len(codes) {
		t.Errorf("Codes() has duplicates: %v", codes)
	}
	messages := make(map[string]catalog.Code)
	for _, c := range codes {
		if !snakeCase.MatchString(string(c)) {
			t.Errorf("code %q is not snake_case", c)
		}
		m := c.Message()
		switch {
		case m == "":
			t.Errorf("code %q has an empty message", c)
		case !strings.HasSuffix(m, "."):
			t.Errorf("message of %q does not end with a period: %q", c, m)
		case strings.TrimSpace(m) != m:
			t.Errorf("message of %q has surrounding space: %q", c, m)
		case strings.ToUpper(m[:1]) != m[:1]:
			t.Errorf("message of %q does not start with a capital: %q", c, m)
		}
		if other, dup := messages[m]; dup {
			t.Errorf("%q and %q share the message %q", c, other, m)
		}
		messages[m] = c
	}
}

func TestUnknownCode(t *testing.T) {
	c := catalog.Code("from_the_future")
	if c.Known() {
		t.Fatal("an unknown code is Known")
	}
	if got, want := c.Message(), "Unknown error (from_the_future)."; got != want {
		t.Errorf("Message() = %q, want %q", got, want)
	}
	if catalog.Code("").Known() {
		t.Error("the empty code is Known")
	}
}

func TestErrorText(t *testing.T) {
	e := catalog.NewError(catalog.CodePeerOffline)
	if got := e.Error(); got != catalog.CodePeerOffline.Message() {
		t.Errorf("NewError text = %q, want the catalog message", got)
	}
	e = catalog.Errorf(catalog.CodePeerOffline, "(%s, last seen %d days ago)", "web-01", 3)
	if want := "The peer is offline. (web-01, last seen 3 days ago)"; e.Error() != want {
		t.Errorf("Errorf text = %q, want %q", e.Error(), want)
	}
	if e.Detail != "(web-01, last seen 3 days ago)" || e.Err != nil {
		t.Errorf("Errorf without %%w: Detail %q, Err %v", e.Detail, e.Err)
	}
	if e := catalog.Errorf(catalog.CodeInternal, ""); e.Detail != "" || e.Err != nil {
		t.Errorf("Errorf with empty format: %+v", e)
	}
}

func TestErrorfWraps(t *testing.T) {
	cause := fmt.Errorf("opening store: %w", fs.ErrPermission)
	e := catalog.Errorf(catalog.CodeInternal, "registering peer %s: %w", "12D3KooW", cause)
	if e.Err != cause {
		t.Errorf("Err = %v, want the cause", e.Err)
	}
	if errors.Unwrap(e) != cause {
		t.Error("errors.Unwrap does not return the cause")
	}
	if !errors.Is(e, fs.ErrPermission) {
		t.Error("errors.Is does not reach through the cause")
	}
	if want := "registering peer 12D3KooW: opening store: permission denied"; e.Detail != want {
		t.Errorf("Detail = %q, want %q", e.Detail, want)
	}
	var pathErr *fs.PathError
	wrappedPath := catalog.Errorf(catalog.CodeSiteNotFound, "reading: %w", &fs.PathError{Op: "open", Path: "/x", Err: fs.ErrNotExist})
	if !errors.As(wrappedPath, &pathErr) || pathErr.Path != "/x" {
		t.Error("errors.As does not reach a wrapped *fs.PathError")
	}
}

func TestErrorfWrapsSeveral(t *testing.T) {
	errA, errB := errors.New("a"), errors.New("b")
	e := catalog.Errorf(catalog.CodeInternal, "%w and %w", errA, errB)
	if !errors.Is(e, errA) || !errors.Is(e, errB) {
		t.Errorf("with two %%w verbs, causes reachable: a=%v b=%v", errors.Is(e, errA), errors.Is(e, errB))
	}
	if e.Detail != "a and b" {
		t.Errorf("Detail = %q", e.Detail)
	}
}

func TestErrorsIsByCode(t *testing.T) {
	err := fmt.Errorf("jumping to web-01: %w", catalog.Errorf(catalog.CodePeerOffline, "(since 09:14)"))
	if !errors.Is(err, catalog.NewError(catalog.CodePeerOffline)) {
		t.Error("errors.Is does not match the same code")
	}
	if errors.Is(err, catalog.NewError(catalog.CodePeerNotFound)) {
		t.Error("errors.Is matches another code")
	}
	// A target with detail or cause is a specific error, not a code.
	if errors.Is(err, catalog.Errorf(catalog.CodePeerOffline, "(since 10:00)")) {
		t.Error("errors.Is matches a target with other detail")
	}
	if !catalog.HasCode(err, catalog.CodePeerOffline) || catalog.HasCode(err, catalog.CodeInternal) {
		t.Error("HasCode disagrees with the code")
	}
	if catalog.HasCode(nil, "") {
		t.Error("HasCode(nil, \"\") is true")
	}
	var e *catalog.Error
	if !errors.As(err, &e) || e.Code != catalog.CodePeerOffline {
		t.Errorf("errors.As: %v", e)
	}
}

func TestCodeOf(t *testing.T) {
	cases := []struct {
		err  error
		want catalog.Code
	}{
		{nil, ""},
		{errors.New("plain"), catalog.CodeInternal},
		{catalog.NewError(catalog.CodeServerBusy), catalog.CodeServerBusy},
		{fmt.Errorf("outer: %w", catalog.NewError(catalog.CodeKeyExpired)), catalog.CodeKeyExpired},
		// The outermost code wins.
		{catalog.Errorf(catalog.CodeCoordinatorDown, "%w", catalog.NewError(catalog.CodeServerBusy)), catalog.CodeCoordinatorDown},
		{errors.Join(errors.New("x"), catalog.NewError(catalog.CodeLastAdmin)), catalog.CodeLastAdmin},
	}
	for _, tc := range cases {
		if got := catalog.CodeOf(tc.err); got != tc.want {
			t.Errorf("CodeOf(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestErrorWireRoundTrip(t *testing.T) {
	for _, c := range catalog.Codes() {
		for _, in := range []*catalog.Error{catalog.NewError(c), catalog.Errorf(c, "(detail of %s)", c)} {
			p := catalog.ErrorToPB(in)
			if p.GetCode() != string(c) || p.GetMessage() != c.Message() || p.GetDetail() != in.Detail {
				t.Errorf("ErrorToPB(%v) = %v", in, p)
			}
			out := catalog.ErrorFromPB(p)
			var e *catalog.Error
			if !errors.As(out, &e) {
				t.Fatalf("ErrorFromPB returned %T", out)
			}
			if e.Code != c || e.Detail != in.Detail || out.Error() != in.Error() {
				t.Errorf("round trip of %q: got %+v (%q)", in.Error(), e, out)
			}
		}
	}
}

func TestErrorToPB(t *testing.T) {
	if catalog.ErrorToPB(nil) != nil {
		t.Error("ErrorToPB(nil) is not nil")
	}
	// An error without a code, and an Internal one, describe this
	// process: the remote gets InternalNote; LocalErrorParts keeps the text.
	p := catalog.ErrorToPB(errors.New("open /var/lib/jumpmesh/db/000001.vlog: disk full"))
	if p.GetCode() != string(catalog.CodeInternal) || p.GetMessage() != catalog.CodeInternal.Message() || p.GetDetail() != catalog.InternalNote {
		t.Errorf("plain error on the wire: %v", p)
	}
	internal := catalog.Internalf("(store: %w)", fs.ErrPermission)
	if p := catalog.ErrorToPB(internal); p.GetDetail() != catalog.InternalNote || !errors.Is(internal, fs.ErrPermission) {
		t.Errorf("internal error on the wire: %v", p)
	}
	if code, msg, detail := catalog.LocalErrorParts(internal); code != catalog.CodeInternal || msg != catalog.CodeInternal.Message() || detail != "(store: permission denied)" {
		t.Errorf("LocalErrorParts = %s %q %q", code, msg, detail)
	}
	// A coded error keeps its code when wrapped with context.
	p = catalog.ErrorToPB(fmt.Errorf("listing: %w", catalog.Errorf(catalog.CodePermissionDenied, "(admin only)")))
	if p.GetCode() != string(catalog.CodePermissionDenied) || p.GetDetail() != "(admin only)" {
		t.Errorf("wrapped coded error on the wire: %v", p)
	}
	// The wire error carries no cause, only its text.
	e := catalog.ErrorFromPB(catalog.ErrorToPB(catalog.Errorf(catalog.CodeInternal, "writing: %w", fs.ErrClosed)))
	if errors.Is(e, fs.ErrClosed) {
		t.Error("a cause survived the wire")
	}
	if !strings.Contains(e.Error(), fs.ErrClosed.Error()) {
		t.Errorf("the cause's text was lost: %q", e)
	}
}

func TestErrorFromPB(t *testing.T) {
	if catalog.ErrorFromPB(nil) != nil {
		t.Error("ErrorFromPB(nil) is not nil")
	}
	cases := []struct {
		name       string
		in         *pb.Error
		wantCode   catalog.Code
		wantDetail string
		wantText   string
	}{
		{
			name:     "known code, local message wins",
			in:       &pb.Error{Code: string(catalog.CodePeerOffline), Message: "Der Peer ist offline.", Detail: "(web-01)"},
			wantCode: catalog.CodePeerOffline, wantDetail: "(web-01)",
			wantText: "The peer is offline. (web-01)",
		},
		{
			name:     "unknown code keeps remote message",
			in:       &pb.Error{Code: "quota_exceeded", Message: "The quota is exceeded.", Detail: "(12 of 10)"},
			wantCode: "quota_exceeded", wantDetail: "The quota is exceeded. (12 of 10)",
			wantText: "Unknown error (quota_exceeded). The quota is exceeded. (12 of 10)",
		},
		{
			name:     "unknown code, message only",
			in:       &pb.Error{Code: "quota_exceeded", Message: "The quota is exceeded."},
			wantCode: "quota_exceeded", wantDetail: "The quota is exceeded.",
			wantText: "Unknown error (quota_exceeded). The quota is exceeded.",
		},
		{
			name:     "unknown code, nothing else",
			in:       &pb.Error{Code: "quota_exceeded"},
			wantCode: "quota_exceeded",
			wantText: "Unknown error (quota_exceeded).",
		},
		{
			name:     "no code",
			in:       &pb.Error{Message: "something", Detail: "went wrong"},
			wantCode: catalog.CodeInternal, wantDetail: "went wrong",
			wantText: "An internal error occurred. went wrong",
		},
		{
			name:     "empty",
			in:       &pb.Error{},
			wantCode: catalog.CodeInternal,
			wantText: "An internal error occurred.",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := catalog.ErrorFromPB(tc.in)
			var e *catalog.Error
			if !errors.As(err, &e) {
				t.Fatalf("got %T", err)
			}
			if e.Code != tc.wantCode || e.Detail != tc.wantDetail {
				t.Errorf("got code %q detail %q, want %q %q", e.Code, e.Detail, tc.wantCode, tc.wantDetail)
			}
			if err.Error() != tc.wantText {
				t.Errorf("text %q, want %q", err.Error(), tc.wantText)
			}
			if catalog.CodeOf(err) != tc.wantCode {
				t.Errorf("CodeOf = %q", catalog.CodeOf(err))
			}
		})
	}
}
