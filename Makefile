# Thin wrapper over CMake. `make run` and `make test` are the two commands of the README.
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?=

.PHONY: all deps build run test test-asan test-neon node-deps clean

all: build

deps:
	./scripts/install-deps.sh

$(BUILD)/Makefile:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release $(CMAKE_FLAGS)

build: $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

node-deps:
	./scripts/node-deps.sh

# Main job: install dependencies, build, serve the bundled default model.
run: deps build
	./$(BUILD)/pagellm serve $(ARGS)

# The whole suite through CTest.
test: deps node-deps build
	cd $(BUILD) && ctest --output-on-failure -j 2
	@nvidia-smi -L >/dev/null 2>&1 || echo "GPU tests skipped: no NVIDIA GPU on this machine (scripts/test-gpu.sh runs them on one; see docs/gpu/README.md)"

# ASan+UBSan, with the invariant checkers after every engine step (PL_CHECKS). -O1: at -O0
# the kernels' intrinsics run several times slower (test_spec_decode took 8 min instead of 4).
test-asan:
	$(MAKE) test BUILD=build-asan CMAKE_FLAGS="-DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_FLAGS_DEBUG='-g -O1' -DPL_SANITIZE=ON -DPL_CHECKS=ON"

# NEON kernels: cross-compile for aarch64 and run under qemu-user.
test-neon:
	./scripts/install-deps.sh --cross
	./scripts/test-neon.sh

clean:
	rm -rf build build-asan build-neon
