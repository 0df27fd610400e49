# shellcheck shell=bash
# cargo-fuzz (a Rust package) for `make fuzz` and `make fuzz-smoke` (scripts/fuzz.sh), built with
# the project's stable toolchain into the cache, one directory per version, and linked into
# $BIN so `cargo fuzz` finds it on the PATH scripts/fuzz.sh sets. No nightly: see the Makefile.
# Sourced by scripts/tools.sh: $CACHE, $BIN and log come from there.
CARGO_FUZZ_VERSION=${CARGO_FUZZ_VERSION:-0.13.2}

install_cargo_fuzz() {
  local root="$CACHE/cargo/cargo-fuzz-$CARGO_FUZZ_VERSION"
  if [ ! -x "$root/bin/cargo-fuzz" ]; then
    log "building cargo-fuzz $CARGO_FUZZ_VERSION with cargo install (cold: about 2 minutes)"
    # A half-done install never takes the place of a good one.
    rm -rf "$root.tmp.$$"
    cargo install --quiet --locked --root "$root.tmp.$$" cargo-fuzz --version "=$CARGO_FUZZ_VERSION"
    rm -rf "$root" && mv "$root.tmp.$$" "$root"
  fi
  ln -sfn "$root/bin/cargo-fuzz" "$BIN/cargo-fuzz"
}

install_cargo_fuzz
