# The `mailsec` image: one binary, both roles (`mailsec controller`, `mailsec serve`), as used by
# charts/mailsec-operator. Multi-stage: a Rust build with the committed Cargo.lock, then only the
# binary on a distroless base (glibc and libgcc, no shell, no package manager), running as the
# unprivileged `nonroot` user (65532).
#
#   docker build -t registry.example/mailsec-operator:0.1.0 .
#
# Not built in this repository's CI (it runs without a container engine).

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
