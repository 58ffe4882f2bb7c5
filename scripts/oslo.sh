#!/usr/bin/env bash
# Prints the path of the OpenSLO `oslo` CLI pinned in tests/openslo/go.mod, building it
# first (Go module proxy, checksums from tests/openslo/go.sum) into .cache/oslo/<version>/
# unless that version is cached already. `go install ...@version` cannot be used: the
# proxy refuses the module's version list, which `go install` reads for deprecations.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
VERSION=$(awk '$1 == "require" && $2 == "github.com/OpenSLO/oslo" { print $3 }' tests/openslo/go.mod)
BIN="$ROOT/.cache/oslo/$VERSION/oslo"
if [ ! -x "$BIN" ]; then
    command -v go >/dev/null || { echo "oslo.sh: go is not installed" >&2; exit 1; }
    mkdir -p "$(dirname "$BIN")"
    (cd tests/openslo && GOFLAGS=-mod=readonly go build -o "$BIN.tmp" github.com/OpenSLO/oslo/cmd/oslo) >&2
    mv "$BIN.tmp" "$BIN"
fi
echo "$BIN"
