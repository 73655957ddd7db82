#!/usr/bin/env bash
# Runs kvmify's whole test suite: installs the real peer tools the tests use,
# then vets and tests every package. Under CI (CI=true) a missing peer tool
# fails a test instead of skipping it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

scripts/install-deps.sh
go version
go vet ./...
gofmt_out=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$gofmt_out" ]; then
	echo "gofmt would change:"; echo "$gofmt_out"; exit 1
fi
go test -count=1 -timeout 25m "$@" ./...
