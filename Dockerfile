# The docker-compose lab's image (docker-compose.yml, docs/docker.md):
# swanmgr, Debian's strongSwan 5.9 with the userspace IPsec plugin, and the
# policies. One image for every host; the service's environment says which
# host it is.
#
# This file builds swanmgr in the golang image (needs a registry). Where
# only a Debian base image can be had, build the static binary on the host
# and use Dockerfile.prebuilt, which is this file without the first stage.
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/swanmgr ./cmd/swanmgr

FROM debian:bookworm-slim
COPY docker/packages.sh /tmp/packages.sh
RUN sh /tmp/packages.sh && rm /tmp/packages.sh
COPY --from=build /out/swanmgr /usr/local/bin/swanmgr
COPY examples /opt/swanmgr/examples
COPY docker /opt/swanmgr/docker
# Git does not keep file modes; swanmgr refuses keys others can read.
RUN find /opt/swanmgr \( -name '*.psk' -o -name '*.key' \) -exec chmod 600 {} + && chmod 755 /opt/swanmgr/docker/*.sh
WORKDIR /opt/swanmgr
HEALTHCHECK --interval=2s --timeout=5s --start-period=30s --retries=3 CMD ["swanmgr", "lab", "host", "--health"]
ENTRYPOINT ["/opt/swanmgr/docker/entrypoint.sh"]
