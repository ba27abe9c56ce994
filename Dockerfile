# The docker-compose lab's image (docker-compose.yml, docs/docker.md):
# swanmgr, Debian's strongSwan 5.9 with the userspace IPsec plugin, and the
# policies. One image for every host; the service's environment says which
# host it is.
ARG GO_VERSION=1.26
FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/swanmgr ./cmd/swanmgr

FROM debian:bookworm-slim
RUN apt-get update \
	&& DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
		strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins \
		iproute2 tcpdump netcat-openbsd procps ca-certificates \
	&& rm -rf /var/lib/apt/lists/*
COPY --from=build /out/swanmgr /usr/local/bin/swanmgr
COPY examples /opt/swanmgr/examples
COPY docker /opt/swanmgr/docker
# Git does not keep file modes; swanmgr refuses keys others can read.
RUN find /opt/swanmgr \( -name '*.psk' -o -name '*.key' \) -exec chmod 600 {} + && chmod 755 /opt/swanmgr/docker/*.sh
WORKDIR /opt/swanmgr
ENTRYPOINT ["/opt/swanmgr/docker/entrypoint.sh"]
