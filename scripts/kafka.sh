#!/usr/bin/env bash
# Prints the folder of the Apache Kafka broker jars pinned in tests/kafka/pom.xml, fetching
# them first with Maven (Maven Central) into .cache/kafka/<hash>/libs unless cached. The
# hash covers the pom, so changing a version fetches afresh. Tests run the broker with
# `java -cp '<dir>/*' kafka.Kafka` (tests/common/kafka.rs, tests/e2e/conftest.py).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
HASH=$(sha256sum tests/kafka/pom.xml | cut -c1-16)
DIR="$ROOT/.cache/kafka/$HASH"
# Test binaries run in parallel and each may call this on a fresh clone: one fetches,
# the others wait for it (a second fetch's `rm -rf` broke the first's copy).
mkdir -p "$ROOT/.cache/kafka"
exec 9>"$ROOT/.cache/kafka/.lock"
flock 9
if [ ! -f "$DIR/.complete" ]; then
    command -v mvn >/dev/null || { echo "kafka.sh: mvn is not installed" >&2; exit 1; }
    command -v java >/dev/null || { echo "kafka.sh: java is not installed" >&2; exit 1; }
    rm -rf "$DIR"
    mkdir -p "$DIR"
    mvn -q -B -f tests/kafka/pom.xml dependency:copy-dependencies \
        -DoutputDirectory="$DIR/libs" >&2
    touch "$DIR/.complete"
fi
echo "$DIR/libs"
