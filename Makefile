# Passerelle build. `make demo` and `make test` are the two commands a new
# user runs; see README.md.
GO      ?= go
BIN     := bin/passerelle
PKGS    := ./...
TESTFLAGS ?= -race -timeout 20m
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0
STATICCHECK        := honnef.co/go/tools/cmd/staticcheck@v0.7.0

.PHONY: all build test demo bench deps proto lint fuzz clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/passerelle

deps:
	@bash scripts/deps.sh

test: deps
	$(GO) vet $(PKGS)
	$(GO) test $(TESTFLAGS) $(PKGS)

demo: build
	./$(BIN) demo

bench: build
	bash scripts/bench.sh

# Regenerates the committed gRPC/protobuf code; CI checks it for drift.
proto:
	@command -v protoc >/dev/null || (apt-get update -qq && apt-get install -y -qq protobuf-compiler)
	GOBIN=$(CURDIR)/bin $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(CURDIR)/bin $(GO) install $(PROTOC_GEN_GO_GRPC)
	PATH=$(CURDIR)/bin:$$PATH protoc -I proto --go_out=proto --go_opt=paths=source_relative \
		--go-grpc_out=proto --go-grpc_opt=paths=source_relative $$(find proto -name '*.proto')

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)

# Longer fuzzing than the seed corpora `make test` runs: FUZZTIME per target.
FUZZTIME ?= 30s
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
