#!/usr/bin/env bash
# npm run bench:agent: see scripts/bench/agent.ts. Needs root. Installs Debian's ksmtuned (the
# baseline) if missing; it is started by the benchmark only, never as a service.
set -euo pipefail
cd "$(dirname "$0")/../.."
if [ ! -x /usr/sbin/ksmtuned ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends ksmtuned
fi
bash scripts/qemu/setup.sh
npx tsc -p tsconfig.json
exec node dist/scripts/bench/agent.js
