#!/usr/bin/env bash
# Prints the path of the Compose Specification's JSON schema, as the compose-spec project's
# Go loader (github.com/compose-spec/compose-go) ships it, fetching that module from the
# Go module proxy into .cache/compose-spec/<version>/ unless it is cached already. The
# module's checksum is pinned below; docker/compose.yaml is validated against the schema by
# tests/e2e/test_compose.py (there is no Docker engine or compose plugin to ask).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
MODULE=github.com/compose-spec/compose-go/v2
VERSION=v2.9.0
SUM="h1:UHSv/QHlo6QJtrT4igF1rdORgIUhDo1gWuyJUoiNNIM="
OUT="$ROOT/.cache/compose-spec/$VERSION/compose-spec.json"
if [ ! -f "$OUT" ]; then
    command -v go >/dev/null || { echo "compose-schema.sh: go is not installed" >&2; exit 1; }
    INFO=$(cd / && GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION")
    field() { printf '%s\n' "$INFO" | sed -n "s/^[[:space:]]*\"$1\": \"\(.*\)\",\{0,1\}$/\1/p"; }
    if [ "$(field Sum)" != "$SUM" ]; then
        echo "compose-schema.sh: $MODULE@$VERSION has checksum $(field Sum), expected $SUM" >&2
        exit 1
    fi
    mkdir -p "$(dirname "$OUT")"
    cp "$(field Dir)/schema/compose-spec.json" "$OUT.tmp"
    mv "$OUT.tmp" "$OUT"
fi
echo "$OUT"
