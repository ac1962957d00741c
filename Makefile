# Conveniences over scripts/; the scripts are what README and CI use.
PYTHON ?= python3

.PHONY: build test bench asan clean

build:
	scripts/build $(PYTHON)

test:
	scripts/test

bench:
	scripts/bench

# The pytest suite against an AddressSanitizer build of the extension
# (CPython itself is not instrumented, so libasan is preloaded).
asan:
	scripts/asan $(PYTHON)

clean:
	rm -rf build fastloop/*.so
