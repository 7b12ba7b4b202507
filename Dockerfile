# kube-reloader container image: a static (musl) binary on an empty base, as a non-root user.
#
#   docker build -t kube-reloader:0.1.0 .
#
# The image holds only the binary (11.9 MB measured for the musl build; see the README's
# "Container image"). No shell, no package manager. `make image` builds the same final stage
# without Docker (hack/image.sh), and a test keeps the two equal.

FROM rust:1-alpine AS build
RUN apk add --no-cache musl-dev
WORKDIR /src
# Dependencies first, so code changes do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked \
    && cp target/release/kube-reloader /kube-reloader

FROM scratch
COPY --from=build /kube-reloader /kube-reloader
# A numeric non-root user (no /etc/passwd needed); matches runAsUser in manifests/ and the chart.
USER 65532:65532
EXPOSE 9090
ENTRYPOINT ["/kube-reloader"]
