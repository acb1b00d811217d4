# jumpmesh — see README.md. `make test` is what CI runs.
GO       ?= go
BIN      ?= bin/jumpmesh
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.Version=$(VERSION)
# urfave/cli's man-page renderer (App.ToMan: go-md2man and blackfriday,
# ~70 regular expressions compiled at every process start, 0.5 ms) is left
# out of what make builds and tests; jumpmesh never renders a man page
# (docs/cli.md comes from its own docs command). A plain `go build` or
# `go install github.com/jumpmesh/jumpmesh/cmd/jumpmesh@VERSION` links it
# and works the same, 0.5 ms slower to start.
GOFLAGS += -tags=urfave_cli_no_docs
export GOFLAGS
# Keeps the suite well inside CI's budget on a 2-core machine.
TEST_TIMEOUT ?= 12m
# How many packages go test builds and runs at once (its -p; the default is
# the number of CPUs). Most packages' tests spend most of their run waiting
# (lease TTLs, backoffs, lab links, child processes: about a quarter of a
# core each, measured 2026-12-03), so on 2 cores four at once keep the CPUs
# busy where two left them half idle, and builds go on beside running tests.
TEST_PACKAGES ?= 4

.PHONY: build test deps demo docs bench lint proto fuzz clean

# Debian packages the tests use, installed when root and missing: gcc for
# -race, openssh-server/-client for the forward-an-ssh-session test and the
# OpenSSH benchmarks, chromium to render the lab report (TestReportInChromium),
# iperf3 for the forward benchmark with a client of its own (BenchmarkForwardIperf3).
# Tests that need them skip, saying so, when absent and not root; as root
# (CI) a missing one is a failure, not a skip.
DEB_PKGS := gcc:gcc /usr/sbin/sshd:openssh-server ssh:openssh-client chromium:chromium iperf3:iperf3
deps:
	@missing=""; for p in $(DEB_PKGS); do cmd=$${p%%:*}; pkg=$${p##*:}; \
		command -v $$cmd >/dev/null 2>&1 || [ -x "$$cmd" ] || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing$$missing"; (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) || \
		echo "could not install$$missing; the tests that need them skip"; \
	elif [ -n "$$missing" ]; then echo "missing$$missing (not root); the tests that need them skip"; fi

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/jumpmesh

# The race detector needs cgo and a C compiler: install gcc when root and
# missing (Debian), else run without -race rather than fail.
test: deps lint
	$(GO) test $$(command -v gcc >/dev/null && echo -race) -count=1 -p $(TEST_PACKAGES) -timeout $(TEST_TIMEOUT) ./...

demo: build
	./scripts/demo.sh $(BIN)

# docs/cli.md is generated from the command tree; TestCLIReferenceIsCurrent
# (cmd/jumpmesh) fails until it is regenerated after a command changes.
docs:
	$(GO) run ./cmd/jumpmesh docs --out docs/cli.md

# Benchmarks print ns/op and allocations; BENCHTIME trades precision for time.
BENCHTIME ?= 1s
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) ./...

# staticcheck at a pinned version, fetched by `go run` from the module proxy
# (nothing to install beforehand). A finding that is right to keep gets a
# //lint:ignore CHECK reason on its line, never a blanket exclusion.
STATICCHECK_VERSION := v0.8.2
lint:
	$(GO) vet ./...
	@out="$$(gofmt -l .)"; test -z "$$out" || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# Short fuzzing of every fuzz target (the corpora live in testdata/fuzz).
FUZZTIME ?= 20s
fuzz:
	$(GO) test ./mesh/installerkey -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) test ./mesh/control -run '^$$' -fuzz FuzzDecodeRequest -fuzztime $(FUZZTIME)
	$(GO) test ./mesh/control -run '^$$' -fuzz FuzzDecodeResponse -fuzztime $(FUZZTIME)
	$(GO) test ./coordinator -run '^$$' -fuzz FuzzParseQuery -fuzztime $(FUZZTIME)
	$(GO) test ./peer -run '^$$' -fuzz FuzzSysParseUtmp -fuzztime $(FUZZTIME)
	$(GO) test ./peer -run '^$$' -fuzz FuzzSysParseRoute -fuzztime $(FUZZTIME)
	$(GO) test ./peer -run '^$$' -fuzz FuzzSysParseARP -fuzztime $(FUZZTIME)
	$(GO) test ./sim/probe -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME)
	$(GO) test ./mesh/grant -run '^$$' -fuzz FuzzVerify -fuzztime $(FUZZTIME)
	$(GO) test ./mesh/localpolicy -run '^$$' -fuzz FuzzVerify -fuzztime $(FUZZTIME)
	$(GO) test ./mesh/channel -run '^$$' -fuzz FuzzCheckEntryPath -fuzztime $(FUZZTIME)
	$(GO) test ./mesh/channel -run '^$$' -fuzz FuzzReceiveTree -fuzztime $(FUZZTIME)

# Regenerates mesh/pb from the .proto files; needs protoc (Debian: protobuf-compiler,
# installed here when running as root) and protoc-gen-go (from the Go module proxy).
PROTOC_GEN_GO_VERSION := v1.36.12
proto:
	@command -v protoc >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq protobuf-compiler; }
	GOBIN=$(CURDIR)/bin $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	cd mesh/pb && PATH=$(CURDIR)/bin:$$PATH protoc --go_out=. --go_opt=paths=source_relative -I . *.proto

clean:
	rm -rf bin
