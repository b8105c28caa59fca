# wirescope: `make` builds the static binary, `make test` runs every test,
# `make demo` shows it working, `make bench` measures it (BENCHMARKS.md).
CARGO ?= cargo
TARGET := x86_64-unknown-linux-gnu
BIN := target/$(TARGET)/release/wirescope

.PHONY: all build deps demo test test-unit test-host test-matrix lint bench clean

all: build

deps:
	scripts/deps.sh build test

build: deps
	$(CARGO) build --release --locked
	@file $(BIN) | grep -q 'static' || { echo "$(BIN) is not statically linked" >&2; exit 1; }
	@echo "built $(BIN) ($$(du -k $(BIN) | cut -f1) KiB, statically linked)"

demo: build
	scripts/demo.sh $(BIN)

# Unit tests: no privileges needed.
test-unit: deps
	$(CARGO) test --locked --bins

# The privileged integration suite on this host only (root, BPF).
test-host: deps
	scripts/matrix.sh host

# The kernel matrix: the privileged suite on this host, then inside a virtual
# machine per Debian kernel (see README). A subset: make test KERNELS="6.1".
KERNELS ?= host 5.10 6.1 6.12
test-matrix: deps
	scripts/matrix.sh $(KERNELS)

test: lint test-unit test-matrix

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --locked --all-targets -- -D warnings

# Overhead and throughput side by side with bpftrace, xdpdump and tcpdump;
# writes BENCHMARKS.md (about 5 minutes, 8 once conn and sendlat exist; QUICK=1:
# about 2 minutes, one round).
# COMPARE=path/to/another/wirescope adds that build's event-pipeline figures.
bench: build
	scripts/deps.sh bench
	python3 bench/bench.py --bin $(BIN) --out BENCHMARKS.md $(if $(QUICK),--quick) \
		$(if $(COMPARE),--compare $(COMPARE))

clean:
	$(CARGO) clean
