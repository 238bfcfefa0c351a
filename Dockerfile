# Container image for teleport-opsgenie.
#
#   docker build -t teleport-opsgenie .
#   docker run --rm -v /path/to/teleport-opsgenie.yaml:/etc/teleport-opsgenie.yaml:ro \
#     -v /path/to/secrets:/var/lib/teleport/plugins/opsgenie:ro -p 9469:9469 teleport-opsgenie
#
# The configuration must set `http.listen: 0.0.0.0:9469` for the port to be reachable from
# outside the container (see config/kubernetes.yaml).

# The toolchain is Cargo.toml's `rust-version`, the locked dependencies' minimum
# (tests/deployment.rs checks that the two agree). `.dockerignore` keeps target/ and .git out
# of the build context.
FROM rust:1.89-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin teleport-opsgenie \
    && install -m 0755 target/release/teleport-opsgenie /teleport-opsgenie

# A distroless base: CA certificates and glibc, no shell, runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /teleport-opsgenie /usr/local/bin/teleport-opsgenie
USER 65532:65532
EXPOSE 9469
ENTRYPOINT ["/usr/local/bin/teleport-opsgenie"]
CMD ["start", "-c", "/etc/teleport-opsgenie.yaml"]
