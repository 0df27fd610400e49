# The `mailsec` image: one binary, both roles (`mailsec controller`, `mailsec serve`), as used by
# charts/mailsec-operator. Multi-stage: a Rust build with the committed Cargo.lock, then only the
# binary on a distroless base (glibc and libgcc, no shell, no package manager), running as the
# unprivileged `nonroot` user (65532).
#
#   docker build -t registry.example/mailsec-operator:0.1.0 .
#
# Built for linux/amd64 and linux/arm64 and pushed to ghcr.io by .github/workflows/release.yml
# (on v* tags). The test suite has no container engine: tests/release.rs reads this file and
# checks its `cargo build --locked` against the build context it sees.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked --bin mailsec \
 && install -D -m 0755 target/release/mailsec /out/mailsec

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/mailsec /mailsec
USER 65532:65532
ENTRYPOINT ["/mailsec"]
