#!/usr/bin/env bash
# npm run bench:core: see scripts/bench/core.ts.
set -euo pipefail
cd "$(dirname "$0")/../.."
npx tsc -p tsconfig.json
exec node dist/scripts/bench/core.js
