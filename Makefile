# Alumini: `make run` starts the pipeline, `make test` runs every test.
# Targets loop over the modules listed in go.work.

MODULES := $(shell sed -n 's|^[[:space:]]*\./\(.*\)|\1|p' go.work)
PKGS    := $(addsuffix /...,$(addprefix ./,$(MODULES)))
DATA    ?= $(CURDIR)/.data

# The toolchain of go.work's toolchain line (fetched through the module
# proxy when the installed go is older): its standard library has the
# fixes the vulnerability scan asks for.
export GOTOOLCHAIN := auto

# Packages whose goroutines share state, tested under the race detector.
RACE_PKGS := ./collector/internal/intake/... ./collector/internal/publish/... ./collector/internal/ratelimit/... \
	./enricher/internal/pipeline/... ./enricher/internal/session/... ./enricher/internal/visitor/... \
	./sinker/internal/sink/... ./sinker/internal/erased/... ./sinker/internal/store/... ./sinker/internal/retention/... \
	./lib/registry/... ./lib/periodic/... ./lib/service/... ./e2e/internal/traffic/...

# WITH_CLICKHOUSE starts the test servers (or reuses running ones) and
# exports their addresses to the command that follows it.
WITH_CLICKHOUSE = addr=$$(deploy/clickhouse/clickhouse.sh start $(DATA)/clickhouse) && \
	cluster=$$(deploy/clickhouse/cluster.sh start $(DATA)/cluster) && \
	if [ -z "$$CLICKHOUSE_ADDR" ] && [ -f $(DATA)/clickhouse/tls/cert.pem ]; then \
		export CLICKHOUSE_TLS_ADDR=127.0.0.1:$${ALUMINI_CLICKHOUSE_TCP_PORT_SECURE:-19440} \
			CLICKHOUSE_TLS_CA_FILE=$(DATA)/clickhouse/tls/cert.pem; fi && \
	CLICKHOUSE_ADDR=$$addr CLICKHOUSE_CLUSTER_ADDR=$$cluster

.PHONY: run test test-race vulncheck test-short build vet fmt fmt-check lint proto deps clickhouse clickhouse-stop bench bench-e2e fuzz clean

run: ## start the whole pipeline on embedded defaults
	deploy/run.sh

# Tests share the local ClickHouse server with `make run` (or use
# CLICKHOUSE_ADDR); each test makes and drops its own database.
# The local server also listens with TLS (self-signed) for the TLS tests.
# The cluster-mode tests use a two-shard cluster of two more servers and a
# ZooKeeper (deploy/clickhouse/cluster.sh; or CLICKHOUSE_CLUSTER_ADDR).
test: deps ## every module's tests, with real ClickHouse and an in-process Kafka-protocol broker
	$(WITH_CLICKHOUSE) go test -count=1 -timeout 20m $(PKGS)

test-race: deps ## the concurrent packages' tests under the race detector
	$(WITH_CLICKHOUSE) go test -race -count=1 -timeout 20m $(RACE_PKGS)

vulncheck: ## govulncheck over every module, against a database built offline from golang.org/x/vulndb
	deploy/vulncheck.sh $(DATA)/vulndb $(addprefix ../,$(PKGS:./%=%))

build:
	go build -o bin/ ./collector ./enricher ./sinker ./reporter ./deploy/devkafka

vet:
	go vet $(PKGS)

fmt:
	gofmt -w $(MODULES)

fmt-check:
	@out=$$(gofmt -l $(MODULES)); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

lint: vet fmt-check

proto: ## regenerate the Go code of the event schema
	cd proto && protoc --plugin=protoc-gen-go="$$(go tool -n protoc-gen-go)" \
		--plugin=protoc-gen-go-vtproto="$$(go tool -n protoc-gen-go-vtproto)" \
		--go_out=. --go_opt=paths=source_relative \
		--go-vtproto_out=. --go-vtproto_opt=paths=source_relative,features=unmarshal_unsafe alumini/v1/*.proto

deps: ## install the Debian packages a fresh machine lacks
	deploy/deps.sh

clickhouse: deps ## start the local ClickHouse server
	deploy/clickhouse/clickhouse.sh start $(DATA)/clickhouse

clickhouse-stop: ## stop the local ClickHouse servers (and the test cluster's ZooKeeper)
	deploy/clickhouse/cluster.sh stop $(DATA)/cluster
	deploy/clickhouse/clickhouse.sh stop $(DATA)/clickhouse

bench:
	go test -run '^$$' -bench . -benchmem $(PKGS)

# The end-to-end benchmark (BENCHMARKS.md): BENCH_E2E holds its flags
# (`go test ./e2e -run TestPipelineBenchmark -args -h` lists them). It runs
# on a ClickHouse server of its own (other ports, data in
# $(DATA)/bench-clickhouse, stopped afterwards) so that the server's CPU is
# the pipeline's alone; with CLICKHOUSE_ADDR set it uses that server.
BENCH_E2E ?= -rate 100000 -for 15s -batch 100
bench-e2e: deps ## the end-to-end benchmark: events/s stored, freshness, CPU per stage (BENCH_E2E="flags")
	addr=$$(ALUMINI_CLICKHOUSE_TCP_PORT=19100 ALUMINI_CLICKHOUSE_HTTP_PORT=18223 ALUMINI_CLICKHOUSE_TCP_PORT_SECURE=19540 \
		deploy/clickhouse/clickhouse.sh start $(DATA)/bench-clickhouse) && \
	CLICKHOUSE_ADDR=$$addr go test -count=1 -timeout 60m -run '^TestPipelineBenchmark$$' -v ./e2e -args $(BENCH_E2E); \
	rc=$$?; [ -n "$$CLICKHOUSE_ADDR" ] || deploy/clickhouse/clickhouse.sh stop $(DATA)/bench-clickhouse; exit $$rc

# Every Go fuzz target (parsers of outside input) for FUZZTIME each.
FUZZTIME ?= 30s
fuzz: ## run every fuzz target for FUZZTIME (default 30s) each
	FUZZTIME=$(FUZZTIME) deploy/fuzz.sh

clean:
	rm -rf bin
