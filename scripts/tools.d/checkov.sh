# shellcheck shell=bash
# checkov (PyPI), the policy scanner that tests/chart_security.rs runs over the rendered Helm
# chart, into its own directory of the cache, and "$BIN/checkov", a wrapper that runs it from
# there. Sourced by scripts/tools.sh: $CACHE, $BIN, log and pip_target come from there.
CHECKOV_VERSION=${CHECKOV_VERSION:-3.3.30}

install_checkov() {
  local dir="$CACHE/python/checkov-$CHECKOV_VERSION" wrapper
  pip_target "$dir" checkov "checkov==$CHECKOV_VERSION"
  # No update check and no Prisma Cloud mapping: checkov asks no server (pass --skip-download
  # too, as tests/chart_security.rs does). The single-quoted lines expand when it runs.
  # shellcheck disable=SC2016
  wrapper=$(printf '%s\n' '#!/bin/sh' "# checkov $CHECKOV_VERSION (scripts/tools.d/checkov.sh)" \
    'export CKV_SKIP_PACKAGE_UPDATE_CHECK="${CKV_SKIP_PACKAGE_UPDATE_CHECK:-true}"' \
    'export BC_SKIP_MAPPING="${BC_SKIP_MAPPING:-TRUE}"' \
    "export PYTHONPATH=\"$dir\${PYTHONPATH:+:\$PYTHONPATH}\"" \
    'exec python3 -m checkov.main "$@"')
  # Rewritten only when it differs (another version, another cache).
  if [ ! -x "$BIN/checkov" ] || [ "$(cat "$BIN/checkov")" != "$wrapper" ]; then
    printf '%s\n' "$wrapper" > "$BIN/checkov.tmp.$$"
    chmod 0755 "$BIN/checkov.tmp.$$"
    mv "$BIN/checkov.tmp.$$" "$BIN/checkov"
  fi
}

install_checkov
