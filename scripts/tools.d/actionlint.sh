# shellcheck shell=bash
# actionlint, the linter of GitHub Actions workflows (.github/workflows/*.yml, run by
# tests/release.rs), built from its Go module; shellcheck (Debian) lets it check the `run:`
# scripts too. Sourced by scripts/tools.sh: $BIN, log and debian_packages come from there.
ACTIONLINT_VERSION=${ACTIONLINT_VERSION:-1.7.12}

build_actionlint() {
  debian_packages shellcheck
  # The bin directory is named after the Kubernetes tools only: compare the version too.
  if [ -x "$BIN/actionlint" ] &&
    [ "$("$BIN/actionlint" -version 2>/dev/null | head -n 1)" = "v$ACTIONLINT_VERSION" ]; then
    return 0
  fi
  log "building actionlint v$ACTIONLINT_VERSION"
  GOBIN="$BIN" go install -trimpath -ldflags "-s -w" \
    "github.com/rhysd/actionlint/cmd/actionlint@v$ACTIONLINT_VERSION"
}

build_actionlint
