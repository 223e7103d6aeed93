# pgshift in a container. Build: docker build -t pgshift .
# Run:   docker run -p 6432:6432 pgshift proxy --listen 0.0.0.0:6432 \
#          --upstream postgres://app@db.internal:5432/app
# The image has no Postgres server, so --upstream (or PGSHIFT_UPSTREAM) is required.
FROM rust:1.95-bookworm AS build
# pg_query builds Postgres's parser (C) and binds it with bindgen (libclang).
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src ./src
COPY schemas ./schemas
RUN cargo build --release --locked --bin pgshift

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --no-create-home pgshift
COPY --from=build /src/target/release/pgshift /usr/local/bin/pgshift
USER pgshift
EXPOSE 6432
ENTRYPOINT ["pgshift"]
CMD ["proxy", "--listen", "0.0.0.0:6432"]
