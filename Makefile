# vigil: `make run` starts one agent on loopback, `make test` runs every test.
GO      ?= go
BIN     := bin/vigil
DATA    ?= .vigil/dev
# The serf agent built from the serf module vigil uses, for side-by-side benchmarks.
SERF_VERSION = $(shell $(GO) list -m -f '{{.Version}}' github.com/hashicorp/serf)
SERF_BIN     = bin/serf-$(SERF_VERSION)

.PHONY: build run test unit lint testdeps bench serf clean

build:
	$(GO) build -o $(BIN) .

# One agent on an embedded default: loopback addresses and a data dir under .vigil/.
run: build
	./$(BIN) agent --node dev1 --bind 127.0.0.1:7946 --http-addr 127.0.0.1:7947 --data-dir $(DATA) --profile local --bootstrap

# The serf CLI of the same module version: the tests of serf's tools run it.
# Then the whole-agent simulation over 10,000 seeds, without the race
# detector (which runs a few dozen of them above) and alone on the machine.
test: testdeps lint serf
	VIGIL_SERF_BIN=$(CURDIR)/$(SERF_BIN) $(GO) test -race -count=1 -timeout 60m ./...
	$(GO) test -count=1 -timeout 40m -run 'TestSimulation$$' -v ./engine -args -sim.seeds=10000

unit:
	$(GO) test -race -count=1 -short ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@cp go.mod /tmp/vigil.go.mod.$$$$ && cp go.sum /tmp/vigil.go.sum.$$$$ && $(GO) mod tidy && \
	  if ! cmp -s go.mod /tmp/vigil.go.mod.$$$$ || ! cmp -s go.sum /tmp/vigil.go.sum.$$$$; then \
	    cp /tmp/vigil.go.mod.$$$$ go.mod; cp /tmp/vigil.go.sum.$$$$ go.sum; \
	    echo "go mod tidy changes go.mod/go.sum: run it and commit"; exit 1; fi; \
	  rm -f /tmp/vigil.go.mod.$$$$ /tmp/vigil.go.sum.$$$$

# What the multi-host tests need (network namespaces, iptables), the
# dashboard's browser test (Debian's chromium) and the unit check
# (systemd-analyze); installed only when missing, and only where we are root.
testdeps:
	@missing=""; \
	  command -v ip >/dev/null || missing="$$missing iproute2"; \
	  command -v iptables >/dev/null || missing="$$missing iptables"; \
	  command -v chromium >/dev/null || missing="$$missing chromium"; \
	  command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	  if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing >/dev/null; \
	    else echo "note:$$missing missing and not root: the tests that need them will skip"; fi; fi

# The serf agent from the same module version, for BENCHMARKS.md.
serf: $(SERF_BIN)
$(SERF_BIN):
	GOBIN=$(CURDIR)/bin $(GO) install github.com/hashicorp/serf/cmd/serf@$(SERF_VERSION)
	mv bin/serf $(SERF_BIN)

# The figures of BENCHMARKS.md: micro-benchmarks, then vigil and the serf
# agent of the same module version side by side (failover, scale, idle CPU and
# memory, loss, flapping) and the simulation at 1,000 nodes, without -race;
# then the summary at the top of BENCHMARKS.md is rewritten from what ran
# (bin/bench/*.tsv). One at a time: they load the whole machine. About 95 min
# with the defaults (20 and then 50 agents idle 5 min each, 1,000 nodes
# simulated 10 min, which alone takes about 27 min); VIGIL_SCALE_IDLE=120s
# VIGIL_SIM_DURATION=60s make bench takes about 30.
bench: testdeps serf
	$(GO) test -run '^$$' -bench . -benchmem -count=4 ./scoring/ ./consensus/
	$(GO) test -count=1 -run 'TestQuality' -v ./scoring/
	rm -rf bin/bench
	VIGIL_BENCH=1 VIGIL_SERF_BIN=$(CURDIR)/$(SERF_BIN) VIGIL_BENCH_DIR=$(CURDIR)/bin/bench \
	  $(GO) test -count=1 -timeout 180m -v -run 'TestFailoverVersusSerf|TestMemoryVersusSerf|TestScaleVersusSerf|TestLossVersusSerf|TestFlappingIngressVersusSerf|TestSimulationAtScale' . ; \
	  status=$$?; \
	  VIGIL_BENCH_WRITE=1 VIGIL_BENCH_DIR=$(CURDIR)/bin/bench $(GO) test -count=1 -run 'TestBenchmarksSummary$$' . && exit $$status

clean:
	rm -rf bin .vigil
