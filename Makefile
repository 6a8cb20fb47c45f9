# The two set-up commands of the README: `make demo` and `make test`.
# Both install what they need from Debian's packages when it is missing.
.PHONY: deb all deps build build-asan test test-default test-asan demo bench fuzz clean man

JOBS ?= $(shell nproc)
SECONDS ?= 30
CTEST_ARGS ?=

# Debian 12 packages the build, the tests and the demo need.
DEB_PACKAGES = build-essential cmake ninja-build g++ clang libclang-rt-14-dev \
  libexpected-dev libfmt-dev libtomlplusplus-dev nlohmann-json3-dev \
  libgtest-dev libgmock-dev libbenchmark-dev pkg-config groff-base \
  bubblewrap graphviz python3 procps iproute2 util-linux libseccomp-dev \
  dpkg-dev lintian systemd mmdebstrap e2fsprogs libpam0g-dev

all: build

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  if [ "$$(id -u)" != 0 ]; then echo "need root to apt-get install $$missing" >&2; exit 1; fi; \
	  DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

build: deps
	cmake --preset default >/dev/null
	cmake --build build -j $(JOBS)

build-asan: deps
	cmake --preset asan >/dev/null
	cmake --build build-asan -j $(JOBS)

# Every test: the g++ build, then the whole suite again under ASan+UBSan
# (clang), which also runs every libFuzzer target for a bounded number of runs.
test: test-default test-asan

test-default: build
	cd build && ctest --output-on-failure --timeout 900 -j $(JOBS) $(CTEST_ARGS)

test-asan: build-asan
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure --timeout 900 -j $(JOBS) $(CTEST_ARGS)

# The main job: a small Qubes on this machine (see README).
demo: build
	./examples/demo.sh

bench: build
	./bench/run.sh

# Run every fuzz target for SECONDS seconds each.
fuzz: build-asan
	./fuzz/run.sh build-asan/fuzz $(SECONDS)

# Three Debian packages (vm, dom0, host) in build/packages/: see docs/packaging.md.
deb: build
	cd build && cpack -G DEB

clean:
	rm -rf build build-asan
