#!/usr/bin/env bash
# Runs a command with the test environment up and exported, then takes the environment down,
# even if the command (or env-up.sh) fails; exits with the command's exit code.
#
#   scripts/with-env.sh cargo test --all-targets
#
# Uses $MAILSEC_ENV_DIR like env-up.sh/env-down.sh (the Makefile's `test` target points it at a
# directory of its own, so a `make up` environment is left alone).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
[ $# -gt 0 ] || { echo "usage: $0 command [args...]" >&2; exit 2; }

down() { "$here/env-down.sh" || echo "[with-env] warning: env-down.sh failed" >&2; }
trap down EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

exports=$("$here/env-up.sh") || { echo "[with-env] env-up.sh failed" >&2; exit 1; }
eval "$exports"
"$@"
