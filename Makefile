# A thin wrapper over CMake.  `make test` and `make demo` do everything on
# a fresh Debian 12 machine: install missing packages (as root), configure,
# build, then run.
BUILD      ?= build
BUILD_SAN  ?= build-sanitize
PREFIX     ?= /usr/local
# set when PREFIX was given to this make, not taken from the default above
PREFIX_GIVEN := $(filter command line environment environment override,$(origin PREFIX))
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=

.PHONY: all deps configure build test test-sanitize demo bench install uninstall clean mutate

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

# Breaks each promise in tests/mutations.txt on purpose, in a copy of the
# tree, and reports the breakages the suite does not notice (survivors).
# MUTATE_ARGS: --only NAME[,NAME], --sample N, --list, --tests REGEX,
# --exclude REGEX.  Not part of `make test`.
MUTATE_ARGS ?=
mutate: deps
	lua5.4 tools/mutate.lua --jobs $(JOBS) $(MUTATE_ARGS)

# Benchmarks; results are appended to bench/RESULTS.md.  bench/run.sh sets
# skein beside a curl floor and LangChain.js (npm ci into bench/node);
# slots_bench.sh runs the real llama-server (tests/local-model/setup).
bench: build
	bash bench/run.sh $(BUILD) | tee -a bench/RESULTS.md
	bash bench/df_bench.sh $(BUILD) | tee -a bench/RESULTS.md
	if /usr/bin/python3 -c 'import distributed' 2>/dev/null; then bash bench/dask_bench.sh $(BUILD) | tee -a bench/RESULTS.md; fi
	bash bench/slots_bench.sh $(BUILD) | tee -a bench/RESULTS.md

# A PREFIX given to this make (on the command line or in the environment)
# wins over the one the build was configured with: the build is configured
# again with it, and what depends on it (the path of the installed skills,
# skein.pc) is rebuilt before installing.  Without one, the prefix the
# build was configured with stays.  DESTDIR stages the install.
install: build
ifneq ($(PREFIX_GIVEN),)
	cmake -S . -B $(BUILD) -DCMAKE_INSTALL_PREFIX=$(PREFIX)
	cmake --build $(BUILD) -j $(JOBS)
endif
	cmake --install $(BUILD)

clean:
	rm -rf $(BUILD) $(BUILD_SAN) $(BUILD_FUZZ) $(BUILD_VG)

# skein against a real model: llama-server serving the shared stories260K
# model (../shared/models), and the distil/fine-tune/calibrate/cascade loop
# on it.  The first run on a machine builds llama-server and llama-finetune
# into ~/.cache/skein/llama-server (several minutes); later runs reuse them.
.PHONY: test-local-model
test-local-model: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(if $(PREFIX_GIVEN),-DCMAKE_INSTALL_PREFIX=$(PREFIX)) -DSKEIN_LOCAL_MODEL=ON $(CMAKE_ARGS)
	cmake --build $(BUILD) -j $(JOBS)
	cd $(BUILD) && ctest -R local_model --output-on-failure

# The batch contract inside an existing engine: scripts/dask_map.py on a
# Dask LocalCluster (Debian's python3-distributed, for /usr/bin/python3),
# 2,000 rows with a worker killed mid-run; and the README's GNU parallel
# recipe with one skein process killed mid-run.
.PHONY: test-scaleout
test-scaleout: build
	$(call need_pkgs,python3-distributed parallel procps)
	SKEIN_BIN=$(CURDIR)/$(BUILD)/skein SKEIN_MOCKSERVER=$(CURDIR)/$(BUILD)/tests/skein-mockserver \
	  bash tests/scaleout/test_dask_map.sh
	SKEIN_BIN=$(CURDIR)/$(BUILD)/skein SKEIN_MOCKSERVER=$(CURDIR)/$(BUILD)/tests/skein-mockserver \
	  bash tests/scaleout/test_gnu_parallel.sh

# Installs Debian packages a target needs beyond the base deps (as root,
# like tools/install-deps.sh; otherwise prints the command and fails).
define need_pkgs
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" -ne 0 ]; then \
	    echo "this target needs:$$missing. Run: sudo apt-get install -y$$missing" >&2; exit 1; \
	  fi; \
	  echo "installing:$$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef

# libFuzzer: every tests/fuzz/fuzz_*.c for FUZZ_SECONDS each on a scratch
# copy of its corpus; fails on any crash (the input is kept in
# $(BUILD_FUZZ)/fuzz-artifacts).  The corpora also run as ctest fuzz/*
# in every build.
BUILD_FUZZ   ?= build-fuzz
FUZZ_SECONDS ?= 60
.PHONY: fuzz
fuzz: deps
	$(call need_pkgs,clang libclang-rt-14-dev)
	cmake -S . -B $(BUILD_FUZZ) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=Debug -DSKEIN_FUZZ=ON $(CMAKE_ARGS)
	cmake --build $(BUILD_FUZZ) -j $(JOBS) --target fuzz-targets
	sh tests/fuzz/run.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

# The C tests (unit, integration, fuzz replays) and the Lua and CLI tests'
# runs of the skein binary under valgrind memcheck: any memory error or
# definite leak fails.  Unsanitized -O1 build of its own.
BUILD_VG ?= build-valgrind
.PHONY: test-valgrind
test-valgrind: deps
	$(call need_pkgs,valgrind)
	cmake -S . -B $(BUILD_VG) -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS=-O1 -DSKEIN_VALGRIND=ON \
	  -DCMAKE_CROSSCOMPILING_EMULATOR=$(CURDIR)/tools/valgrind.sh $(CMAKE_ARGS)
	cmake --build $(BUILD_VG) -j $(JOBS)
	cd $(BUILD_VG) && ctest --output-on-failure -j $(JOBS) -E '^(lua|cli)/|local_model'
