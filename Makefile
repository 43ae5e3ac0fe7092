# framesync: `make help` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

export CGO_ENABLED := 1
GO ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
PYTHON := /usr/bin/python3
FUZZTIME ?= 30s
BIN := bin/framesync
VERSITYGW := github.com/versity/versitygw/cmd/versitygw@v1.8.0
APT_PACKAGES := python3-msgpack python3-msgpack-numpy python3-numpy python3-ase redis-server

.PHONY: help deps build run test fault check vet staticcheck bench fuzz fuzz-long fmt clean web

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

deps: ## install what the tests need (Debian packages incl. Chromium and redis-server, npm packages, versitygw, Go modules)
	@if ! $(PYTHON) -c 'import msgpack, msgpack_numpy, numpy, ase' 2>/dev/null || [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/redis-server ]; then \
		echo "installing $(APT_PACKAGES) chromium"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(APT_PACKAGES) chromium >/dev/null; \
	fi
	@if [ ! -d web/node_modules/playwright-core ] || [ web/package-lock.json -nt web/node_modules/.package-lock.json ]; then \
		echo "installing npm packages (web/: esbuild, three, automerge, playwright-core)"; \
		cd web && npm ci --silent --no-audit --no-fund; \
	fi
	@if ! command -v versitygw >/dev/null && [ ! -x "$$($(GO) env GOPATH)/bin/versitygw" ]; then \
		echo "installing versitygw (S3-compatible server for the blob store tests)"; \
		CGO_ENABLED=0 $(GO) install $(VERSITYGW); \
	fi
	$(GO) mod download

web: deps ## rebuild the web UI bundle (web/src -> web/static/dist, committed and embedded)
	cd web && node build.mjs

build: ## build bin/framesync
	$(GO) build -o $(BIN) ./cmd/framesync

run: build ## start a hub with embedded defaults on 127.0.0.1:5000
	./$(BIN) hub

test: deps ## run all tests with the race detector
	FRAMESYNC_REQUIRE_PYTHON=1 FRAMESYNC_REQUIRE_BROWSER=1 FRAMESYNC_REQUIRE_REDIS=1 FRAMESYNC_REQUIRE_S3=1 $(GO) test -race -count=1 ./...

fault: deps ## fault tests with real processes: several hubs, redis-server, clients killed with SIGKILL (fault/; CI runs it)
	FRAMESYNC_FAULT=1 FRAMESYNC_REQUIRE_REDIS=1 $(GO) test -count=1 -v -timeout 30m ./fault/

vet: ## go vet
	$(GO) vet ./...

staticcheck: ## staticcheck
	$(GO) run $(STATICCHECK) ./...

check: vet staticcheck test ## vet, staticcheck and tests

bench: ## run the benchmarks (frame codec, blob store, room documents, hub)
	$(GO) test -run '^$$' -bench . -benchtime 1s ./...

fuzz: ## run every fuzz target for FUZZTIME (default 30s) each
	@set -e; for pkg in $$($(GO) list ./...); do \
		for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
			echo "== $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target\$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

fuzz-long: ## every fuzz target for a minute each (decoders exposed to the network); a crasher lands in testdata/fuzz/ and stays as a regression seed that make test runs
	$(MAKE) fuzz FUZZTIME=1m

fmt: ## gofmt the sources
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build output
	rm -rf bin
