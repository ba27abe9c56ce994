# swanmgr: the two Quick start commands are `make demo` and `make test`.
SHELL := /bin/sh
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go
# The e2e opt-in: with it set, a missing prerequisite fails the tests.
E2E ?= 1
FUZZTIME ?= 15s

.PHONY: all build man deps deps-test demo test unit fuzz vet clean lab-down

all: build

deps:
	@sh scripts/install-deps.sh

deps-test:
	@sh scripts/install-deps.sh test

# -buildvcs=auto: `swanmgr version` names the commit when built in a checkout
# (this machine's GOFLAGS say -buildvcs=false).
build:
	$(GO) build -buildvcs=auto -o bin/swanmgr ./cmd/swanmgr

# The manual page, made from the same command definitions as --help.
man: build
	./bin/swanmgr man > bin/swanmgr.8
	@echo "man bin/swanmgr.8; install as /usr/local/share/man/man8/swanmgr.8"

# The main job: the knowledge-base scenario live in a two-host lab.
demo: deps build
	@sh scripts/demo.sh

# Everything CI runs: vet, unit and golden tests, e2e against real charon
# daemons in network namespaces, and a short fuzz of the policy loader.
test: deps-test
	test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }
	$(GO) vet ./...
	# The docker-compose lab cannot run here (no Docker engine): validate the file.
	docker-compose -f docker-compose.yml config -q
	SWANMGR_E2E=$(E2E) $(GO) test -count=1 -timeout 30m ./...
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME) ./model

unit:
	$(GO) test ./...

lab-down: build
	./bin/swanmgr lab down

clean:
	rm -rf bin
