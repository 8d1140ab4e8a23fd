# vipgate — one binary for proxy + VRRP. `make demo` and `make test` are the
# two commands a newcomer runs (as root, on Debian, with Go installed).
GO        ?= go
export PATH := $(PATH):/usr/local/go/bin:$(HOME)/go/bin:$(shell PATH=$$PATH:/usr/local/go/bin go env GOPATH 2>/dev/null)/bin
export GOTOOLCHAIN := local
BIN       := bin/vipgate
VERSION   := $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
# Debian packages the tests, the demo and the benchmarks use as peers.
DEB_PKGS  := nginx-light libnginx-mod-stream keepalived mosquitto mosquitto-clients tshark haproxy wrk iperf3 curl iproute2 strace procps util-linux gcc libc6-dev
STATICCHECK_VERSION := v0.8.2

.PHONY: all build test test-short bench demo lint fuzz clean deps tools

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/vipgate

# deps installs what tests and the demo need: Debian packages (only the
# missing ones, so a warm machine does not wait for apt; gcc for -race).
deps:
	@scripts/install-deps.sh $(DEB_PKGS)

tools:
	@command -v staticcheck >/dev/null 2>&1 || $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

lint: tools
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt: unformatted files:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	staticcheck ./...

# test: every test, including network-namespace end-to-end tests (root).
test: deps lint
	scripts/cleanup-labs.sh
	$(GO) test -count=1 -timeout 14m ./...
	$(GO) test -count=1 -race -timeout 10m ./balancer/... ./config/... ./internal/... ./health/... ./proxy/... ./admin/...

test-short:
	$(GO) test -short -count=1 ./...

# fuzz: a short run of every fuzz target.
FUZZTIME ?= 10s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 2s $$pkg || exit 1; \
	  done; \
	done

bench: deps build
	scripts/bench.sh

demo: deps build
	scripts/cleanup-labs.sh
	examples/lab/demo.sh $(BIN)

clean:
	rm -rf bin
	scripts/cleanup-labs.sh
