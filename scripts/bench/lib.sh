#!/usr/bin/env bash
# npm run bench:lib: see scripts/bench/lib.ts.
set -euo pipefail
cd "$(dirname "$0")/../.."
npx tsc -p tsconfig.json
exec node dist/scripts/bench/lib.js
