# Pier, built and run in containers. (No base image can be pulled on the CI machine, so CI does
# not build this; `scripts/run.sh` is the tested way to run Pier.)
#
#   docker build -t pier .
#   docker run -d --name pier --network host \
#     -v pier-data:/var/lib/pier \
#     -v /var/run/docker.sock:/var/run/docker.sock --group-add "$(stat -c %g /var/run/docker.sock)" \
#     pier
#   docker exec -i pier pier admin create --email you@example.com --password-stdin <<< "$PASSWORD"
#
# Pier drives the host's Docker engine (the socket, and the group that may use it) and checks its
# apps on the host's loopback ports, where they are published: hence the host network. With the
# host network, 0.0.0.0 would be every interface of the host: the panel listens on loopback only
# (HAProxy serves it publicly), as outside a container.

# --- build: the release server binary, the wasm bundle and the CSS -----------------------------
FROM rust:1.95-bookworm AS build
# Node 20+ for the Tailwind v4 CLI.
COPY --from=node:20-bookworm /usr/local/bin/node /usr/local/bin/node
COPY --from=node:20-bookworm /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && rustup target add wasm32-unknown-unknown \
 && cargo install cargo-leptos --version 0.3.10 --locked
WORKDIR /src
COPY Cargo.toml Cargo.lock package.json package-lock.json ./
RUN wbg=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock) \
 && cargo install wasm-bindgen-cli --version "$wbg" \
 && npm install --no-audit --no-fund
COPY . .
ENV SQLX_OFFLINE=true
# scripts/release.sh: the profile-guided release build, with brotli and gzip copies of the
# browser files; hash.txt names their hashed names and goes with them into the site directory.
RUN ./scripts/release.sh && cp target/release/hash.txt target/site/hash.txt

# --- run: the binary, the site files, and HAProxy (Pier manages it) ----------------------------
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates haproxy \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --home /var/lib/pier pier \
 && install -d -o pier -g pier -m 0700 /var/lib/pier
COPY --from=build /src/target/release/pier /usr/local/bin/pier
COPY --from=build /src/target/site /usr/share/pier/site
ENV PIER_DATA_DIR=/var/lib/pier \
    PIER_SITE_ROOT=/usr/share/pier/site \
    PIER_LISTEN=127.0.0.1:3000
USER pier
VOLUME /var/lib/pier
EXPOSE 3000
HEALTHCHECK --interval=30s --timeout=3s CMD ["/bin/bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/3000 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q ' 200 ' <&3"]
ENTRYPOINT ["pier"]
CMD ["serve"]
