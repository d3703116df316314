#!/bin/sh
# Installs the npm packages the reference tests use (tests/node/package.json), once.
set -eu
cd "$(dirname "$0")/../tests/node"
if [ -d node_modules ] && [ node_modules/.package-lock.json -nt package.json ]; then
  exit 0
fi
npm install --no-audit --no-fund --ignore-scripts --loglevel=error
