# syntax=docker/dockerfile:1
# One image per service: docker build --build-arg SERVICE=gateway -t bizops/gateway .
# SERVICE is one of identity, pilot-catalog, credential-vault, executor, gateway.
ARG SERVICE=gateway

FROM rust:1.95-bookworm AS build
ARG SERVICE
# sqlx::query! macros compile against the committed services/*/.sqlx data, never a live database.
ENV SQLX_OFFLINE=true \
    CARGO_TERM_COLOR=never
WORKDIR /src
RUN case "$SERVICE" in \
      identity|pilot-catalog|credential-vault|executor|gateway) ;; \
      *) echo "SERVICE must be identity, pilot-catalog, credential-vault, executor or gateway (got '$SERVICE')" >&2; exit 1 ;; \
    esac
COPY . .
# The target/ cache mount is shared by the five builds; the binary is copied out of it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p "$SERVICE" --bin "$SERVICE" \
 && install -D -m 0755 "target/release/$SERVICE" /out/service

# Runtime: glibc + libgcc + CA certificates, no shell, no package manager, uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG SERVICE
LABEL org.opencontainers.image.title="bizops-${SERVICE}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /out/service /usr/local/bin/service
USER nonroot:nonroot
# gRPC 50051-50054 or HTTP 8080 (gateway); metrics 9101-9105 (see README "Ports").
# Listen addresses default to 127.0.0.1: set BIZOPS_GRPC_ADDR / BIZOPS_HTTP_ADDR and
# BIZOPS_METRICS_ADDR to 0.0.0.0:<port> in a container (the Helm chart does).
ENTRYPOINT ["/usr/local/bin/service"]
CMD ["serve"]
