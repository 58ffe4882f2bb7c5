#!/usr/bin/env bash
# Installs everything cerflow's tests need on a fresh Debian machine (skipping what is
# already there), then runs every test:
#   1. cargo test --all-targets        Rust unit and integration tests (--no-fail-fast:
#                                      every binary runs even after one fails)
#   2. pytest tests/e2e                end-to-end tests against target/debug/cerflow:
#                                      Python and Node OpenTelemetry SDKs, OTLP/JSON by
#                                      hand, a real Prometheus scraping cerflow, and the
#                                      real OpenTelemetry Collector in front of and
#                                      behind cerflow, and the web view and a test page
#                                      (browser telemetry) in Chromium.
# Exits non-zero if anything fails (pytest's "no tests ran" included).
#
# Installs, each only when missing:
#   - prometheus      apt-get (Debian's package)
#   - .venv           python3 -m venv, then pip install -r tests/e2e/requirements.txt
#   - node modules    one npm ci in tests/e2e (versions pinned in its package-lock.json),
#                     shared by tests/e2e/node and tests/e2e/browser: the OpenTelemetry JS
#                     SDK (Node and web), web-vitals, esbuild, and playwright-core for the
#                     web view and browser tests
#   - chromium        apt-get (Debian's package), driven by playwright-core in
#                     tests/e2e/test_webview.py and tests/e2e/test_browser.py (Playwright's
#                     own browser download is never used: executablePath is /usr/bin/chromium)
#   - oslo            scripts/oslo.sh: the OpenSLO CLI pinned in tests/openslo/go.mod
#   - compose schema  scripts/compose-schema.sh: compose-spec.json from the compose-go module
#   - otelcol         the OpenTelemetry Collector of tests/otelcol (modules pinned in its
#                     go.sum), built with Go from the Go module proxy into
#                     $CERFLOW_CACHE/otelcol-<hash>/ (default ~/.cache/cerflow), where <hash>
#                     covers go.mod, go.sum, main.go and the Go version: a fresh clone on
#                     the same machine reuses it. The first build is 7.5 CPU-minutes
#                     (4-5 minutes on 2 idle cores, 24 on a busy machine);
#                     target/otelcol/otelcol links to it.
#   - java, mvn       apt-get (Debian's default-jre-headless and maven)
#   - kafka           scripts/kafka.sh: the Apache Kafka broker jars of tests/kafka/pom.xml
#                     from Maven Central into .cache/kafka/<hash>/libs (about 40 s once);
#                     tests/kafka.rs and tests/e2e start a KRaft broker from them
#                     (CERFLOW_KAFKA_LIBS).
#
# Environment: PYTHON (default python3) picks the interpreter for the venv;
# CARGO_TARGET_DIR is honoured; CERFLOW_CACHE moves the Collector cache.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
export DEBIAN_FRONTEND=noninteractive

START=$SECONDS
step() { printf '\n==> [%ss] %s\n' "$((SECONDS - START))" "$*"; }
info() { printf '    %s\n' "$*"; }

SUDO=()
if [ "$(id -u)" -ne 0 ]; then
    SUDO=(sudo)
fi

APT_UPDATED=0
apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        info "apt-get update"
        "${SUDO[@]}" apt-get update -qq
        APT_UPDATED=1
    fi
    info "apt-get install -y --no-install-recommends $*"
    "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "$@"
}

failed=()

# ---------------------------------------------------------------- installs

step "Prometheus"
if [ -x /usr/bin/prometheus ]; then
    info "already installed: $(/usr/bin/prometheus --version 2>&1 | head -n1)"
else
    info "installing prometheus (Debian package)"
    apt_install prometheus
    info "installed: $(/usr/bin/prometheus --version 2>&1 | head -n1)"
fi

step "Python virtualenv (.venv) with tests/e2e/requirements.txt"
PYTHON=${PYTHON:-python3}
VENV="$ROOT/.venv"
REQS="$ROOT/tests/e2e/requirements.txt"
if [ ! -x "$VENV/bin/python" ]; then
    info "creating $VENV with $($PYTHON --version 2>&1)"
    if ! "$PYTHON" -m venv "$VENV"; then
        info "python3 -m venv failed; installing python3-venv"
        rm -rf "$VENV"
        apt_install python3-venv
        "$PYTHON" -m venv "$VENV"
    fi
fi
REQS_SUM=$(sha256sum "$REQS" | cut -d' ' -f1)
STAMP="$VENV/.cerflow-e2e-requirements"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$REQS_SUM" ] && "$VENV/bin/python" -m pip check >/dev/null 2>&1; then
    info "already installed (requirements unchanged since the last install)"
else
    info "pip install -r tests/e2e/requirements.txt"
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q -r "$REQS"
    echo "$REQS_SUM" >"$STAMP"
fi
"$VENV/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
    | grep -Ei '^(opentelemetry-(sdk|exporter-otlp-proto-grpc|exporter-otlp-proto-http)|pytest|requests|grpcio|protobuf) ' \
    | sed 's/^/    /'

step "Node packages (tests/e2e, for tests/e2e/node and tests/e2e/browser)"
NODE_DIR="$ROOT/tests/e2e"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    info "node or npm is missing; installing nodejs and npm"
    apt_install nodejs npm
fi
info "node $(node --version), npm $(npm --version 2>/dev/null)"
NODE_SUM=$(cat "$NODE_DIR/package.json" "$NODE_DIR/package-lock.json" | sha256sum | cut -d' ' -f1)
NODE_STAMP="$NODE_DIR/node_modules/.cerflow-e2e-stamp"
if [ -f "$NODE_STAMP" ] && [ "$(cat "$NODE_STAMP")" = "$NODE_SUM" ]; then
    info "already installed (package-lock.json unchanged since the last install)"
else
    info "npm ci (OpenTelemetry JS SDK and web SDK, OTLP exporters, web-vitals, esbuild, playwright-core)"
    (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error)
    echo "$NODE_SUM" >"$NODE_STAMP"
fi
(cd "$NODE_DIR" && npm ls --depth=0 2>/dev/null | tail -n +2 | sed 's/^/    /') || true

step "Chromium (Debian's package, for the web view and browser tests)"
if [ -x /usr/bin/chromium ]; then
    info "already installed: $(/usr/bin/chromium --version 2>/dev/null | head -n1)"
else
    info "installing chromium (Debian package)"
    apt_install chromium
    info "installed: $(/usr/bin/chromium --version 2>/dev/null | head -n1)"
fi

step "Compose Specification schema (compose-go module, cached in .cache/compose-spec/<version>)"
if COMPOSE_SCHEMA=$(bash "$ROOT/scripts/compose-schema.sh"); then
    export COMPOSE_SCHEMA
    info "COMPOSE_SCHEMA=$COMPOSE_SCHEMA"
else
    info "fetching the schema failed: tests/e2e/test_compose.py will say so"
fi

step "OpenSLO oslo CLI (tests/openslo/go.mod, cached in .cache/oslo/<version>)"
if OSLO_BIN=$(bash "$ROOT/scripts/oslo.sh"); then
    export OSLO_BIN
    info "OSLO_BIN=$OSLO_BIN"
else
    info "building oslo failed: tests/e2e/test_openslo.py will say so"
fi

step "Apache Kafka broker (tests/kafka/pom.xml, cached in .cache/kafka/<hash>)"
if ! command -v java >/dev/null || ! command -v mvn >/dev/null; then
    info "java or mvn is missing; installing default-jre-headless and maven"
    apt_install default-jre-headless maven
fi
info "$(java -version 2>&1 | head -n1), $(mvn -v 2>/dev/null | head -n1)"
if CERFLOW_KAFKA_LIBS=$(bash "$ROOT/scripts/kafka.sh"); then
    export CERFLOW_KAFKA_LIBS
    info "CERFLOW_KAFKA_LIBS=$CERFLOW_KAFKA_LIBS"
else
    echo "fetching the Kafka broker with Maven failed: the Kafka tests will fail"
    failed+=("kafka: mvn dependency:copy-dependencies")
fi

step "OpenTelemetry Collector (tests/otelcol)"
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
case "$TARGET_DIR" in /*) ;; *) TARGET_DIR="$ROOT/$TARGET_DIR" ;; esac
OTELCOL_DIR="$ROOT/tests/otelcol"
if ! command -v go >/dev/null; then
    echo "Go is not installed: the Collector of tests/otelcol needs Go 1.26 or newer"
    echo "(https://go.dev/dl/; Debian's golang-go is too old). The Collector tests will fail."
    failed+=("otelcol: no Go toolchain")
else
    # The toolchain go.mod selects (GOTOOLCHAIN may fetch a newer one from the proxy).
    GO_VERSION=$(cd "$OTELCOL_DIR" && go env GOVERSION)
    OTELCOL_HASH=$( (cat "$OTELCOL_DIR/go.mod" "$OTELCOL_DIR/go.sum" "$OTELCOL_DIR/main.go"; echo "$GO_VERSION") \
        | sha256sum | cut -c1-16)
    OTELCOL_CACHE=${CERFLOW_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cerflow}/otelcol-$OTELCOL_HASH
    OTELCOL_BIN=$OTELCOL_CACHE/otelcol
    if [ -x "$OTELCOL_BIN" ]; then
        info "cached: $OTELCOL_BIN"
    else
        info "building with $GO_VERSION into $OTELCOL_CACHE (7.5 CPU-minutes: 4-5 minutes on 2 idle cores)"
        mkdir -p "$OTELCOL_CACHE"
        otelcol_start=$SECONDS
        # -mod=readonly: go.sum is the pin; a build that would change it fails instead.
        # -trimpath and -s -w: no local paths in the binary and a much shorter link.
        if (cd "$OTELCOL_DIR" && CGO_ENABLED=0 GOFLAGS=-mod=readonly \
                go build -trimpath -ldflags='-s -w' -o "$OTELCOL_BIN.tmp" .); then
            mv "$OTELCOL_BIN.tmp" "$OTELCOL_BIN"
            info "built in $((SECONDS - otelcol_start))s"
        else
            rm -f "$OTELCOL_BIN.tmp"
            echo "building the OpenTelemetry Collector (tests/otelcol) failed: see the Go errors above."
            echo "It needs the Go module proxy (GOPROXY=$(go env GOPROXY)) and Go $(sed -n 's/^go //p' "$OTELCOL_DIR/go.mod") or newer."
            failed+=("otelcol build")
        fi
    fi
    if [ -x "$OTELCOL_BIN" ]; then
        mkdir -p "$TARGET_DIR/otelcol"
        ln -sfn "$OTELCOL_BIN" "$TARGET_DIR/otelcol/otelcol"
        export OTELCOL_BIN
        info "OTELCOL_BIN=$OTELCOL_BIN ($("$OTELCOL_BIN" --version 2>&1 | head -n1))"
    fi
fi

# ---------------------------------------------------------------- tests

# --no-fail-fast: a failing binary (the lib's unit tests come first) must not hide the
# results of the ones after it; cargo still exits non-zero when any failed.
step "cargo test --all-targets --no-fail-fast"
if ! cargo test --all-targets --no-fail-fast; then
    failed+=("cargo test --all-targets --no-fail-fast")
fi

step "the cerflow binary the end-to-end tests run"
# cargo test has built it for the integration tests; a plain `cargo build` would
# rebuild half the dependency tree with other features, so it runs only if needed.
if [ -x "$TARGET_DIR/debug/cerflow" ] || cargo build; then
    export CERFLOW_BIN="$TARGET_DIR/debug/cerflow"
    info "CERFLOW_BIN=$CERFLOW_BIN"

    step "pytest tests/e2e"
    set +e
    "$VENV/bin/python" -m pytest "$ROOT/tests/e2e" -v
    status=$?
    set -e
    case $status in
        0) ;;
        5) echo "pytest collected no tests: that is a failure"; failed+=("pytest tests/e2e (no tests ran)") ;;
        *) failed+=("pytest tests/e2e (exit $status)") ;;
    esac
else
    failed+=("cargo build")
    echo "cargo build failed: the end-to-end tests were not run"
fi

# The standards' two checks, after the tests so a lint never hides a test result.
step "cargo fmt --check and cargo clippy --all-targets -- -D warnings"
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --check || failed+=("cargo fmt --check")
else
    info "rustfmt is not installed (rustup component add rustfmt): cargo fmt --check skipped"
fi
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --all-targets -- -D warnings || failed+=("cargo clippy --all-targets -- -D warnings")
else
    info "clippy is not installed (rustup component add clippy): cargo clippy skipped"
fi

step "Summary (took $((SECONDS - START))s)"
if [ ${#failed[@]} -ne 0 ]; then
    for f in "${failed[@]}"; do
        echo "FAILED: $f"
    done
    exit 1
fi
echo "All tests passed: the Collector built, cargo test --all-targets, pytest tests/e2e, cargo fmt and cargo clippy."
