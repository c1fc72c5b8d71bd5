# relevo - the two commands (`make run`, `make test`) and their friends.
# Everything real happens in CMake (CMakeLists.txt) and scripts/.

BUILD      ?= build
BUILD_ASAN ?= build-asan
JOBS       ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo
BUILD_DEB  ?= build-deb

# make install: where things go (scripts/install.sh). DESTDIR stages the tree.
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
UNITDIR    ?= $(PREFIX)/lib/systemd/system
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc

.PHONY: all deps build run test test-unit test-e2e asan fuzz bench clean format install deb

all: build

deps:
	@scripts/deps.sh

$(BUILD)/Makefile: CMakeLists.txt | deps
	cmake -S . -B $(BUILD) $(CMAKE_FLAGS) $(if $(CI),-DRELEVO_WERROR=ON)

build: deps $(BUILD)/Makefile
	@cmake --build $(BUILD) -j $(JOBS)

$(BUILD_ASAN)/Makefile: CMakeLists.txt | deps
	cmake -S . -B $(BUILD_ASAN) -DCMAKE_BUILD_TYPE=Debug -DRELEVO_SANITIZE=ON -DRELEVO_WERROR=ON

asan: deps $(BUILD_ASAN)/Makefile
	@cmake --build $(BUILD_ASAN) -j $(JOBS)

# make run - build the daemon (not the tests), then start it on loopback with a demo
# configuration.
run: deps $(BUILD)/Makefile
	@cmake --build $(BUILD) -j $(JOBS) --target relevo
	@scripts/run-demo.sh $(BUILD)/relevo

# make test - every test: the source check, unit tests and fuzz-corpus replay under
# ASan/UBSan, and the end-to-end suite against the sanitizer-built daemon.
test: build asan
	@scripts/check-source.sh
	cd $(BUILD) && ctest --output-on-failure -E '^e2e$$'
	cd $(BUILD_ASAN) && ctest --output-on-failure

# make install - the binary, relevo.service, /etc/relevo/relevo.yaml.example and the
# man pages relevo(8) and relevo.yaml(5) (generated from README.md).
install: build
	DESTDIR="$(DESTDIR)" PREFIX="$(PREFIX)" SBINDIR="$(SBINDIR)" UNITDIR="$(UNITDIR)" \
	MANDIR="$(MANDIR)" SYSCONFDIR="$(SYSCONFDIR)" scripts/install.sh $(BUILD)/relevo

# make deb - a Debian package in $(BUILD_DEB)/, built with Debian's hardening flags
# (dpkg-buildflags) in a build directory of its own.
deb: deps
	DEB_BUILD_MAINT_OPTIONS=hardening=+all; export DEB_BUILD_MAINT_OPTIONS; \
	CFLAGS="$$(dpkg-buildflags --get CFLAGS) $$(dpkg-buildflags --get CPPFLAGS)" \
	LDFLAGS="$$(dpkg-buildflags --get LDFLAGS)" \
	cmake -S . -B $(BUILD_DEB) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(if $(CI),-DRELEVO_WERROR=ON)
	@cmake --build $(BUILD_DEB) -j $(JOBS) --target relevo
	@scripts/build-deb.sh $(BUILD_DEB)/relevo $(BUILD_DEB)

fuzz: deps
	@scripts/fuzz.sh $(FUZZ_SECONDS)

bench: build
	@bench/run.sh

format:
	clang-format -i src/*/*.c src/*/*.h tests/unit/*.c tests/fuzz/*.c

clean:
	rm -rf $(BUILD) $(BUILD_ASAN) $(BUILD_DEB) build-fuzz
