# A thin wrapper over CMake.  `make test` and `make demo` do everything on
# a fresh Debian 12 machine: install missing packages (as root), configure,
# build, then run.
BUILD      ?= build
BUILD_SAN  ?= build-sanitize
PREFIX     ?= /usr/local
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

.PHONY: all deps configure build test test-sanitize demo bench install uninstall clean

all: build

deps:
	@sh tools/install-deps.sh

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) $(CMAKE_ARGS)

configure: deps $(BUILD)/CMakeCache.txt

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The same suite under AddressSanitizer and UndefinedBehaviorSanitizer.
test-sanitize: deps
	cmake -S . -B $(BUILD_SAN) -DCMAKE_BUILD_TYPE=Debug -DSKEIN_SANITIZE=ON $(CMAKE_ARGS)
	cmake --build $(BUILD_SAN) -j $(JOBS)
	cd $(BUILD_SAN) && ctest --output-on-failure -j $(JOBS)

demo: build
	$(BUILD)/skein run scripts/demo.lua

# Benchmarks; results are appended to bench/RESULTS.md.
bench: build
	bash bench/df_bench.sh $(BUILD) | tee -a bench/RESULTS.md

install: build
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_SAN)

# skein against a real model: llama-server serving the shared stories260K
# model (../shared/models).  The first run on a machine builds llama-server
# into ~/.cache/skein/llama-server (several minutes); later runs reuse it.
.PHONY: test-local-model
test-local-model: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) -DSKEIN_LOCAL_MODEL=ON $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest -R local_model --output-on-failure
