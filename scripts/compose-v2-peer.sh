#!/usr/bin/env bash
# docker compose v2, as a peer for the tests (the config-hash, docker compose driving
# our daemon). Debian 12 packages only Compose v1, so this takes Debian unstable's
# docker-compose package (a static Go binary) with apt-get from Debian's archive,
# signature-checked by the archive keyring, and unpacks it under $1 (never installed
# system-wide: bookworm's v1 stays the reference for `make bench`).
# Usage: compose-v2-peer.sh DIR  ->  DIR/cli-plugins/docker-compose (DOCKER_CONFIG=DIR)
set -euo pipefail
dest=$1
[ -x "$dest/cli-plugins/docker-compose" ] && exit 0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/cache/archives/partial" "$work/deb"
echo "deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg]" \
  "http://deb.debian.org/debian unstable main" > "$work/sources.list"
opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
      -o "Dir::State::Lists=$work/lists" -o "Dir::Cache=$work/cache"
      -o "APT::Get::List-Cleanup=0" -o "Acquire::Languages=none"
      -o "APT::Sandbox::User=root")
apt-get "${opts[@]}" update -qq
(cd "$work/deb" && apt-get "${opts[@]}" download -qq docker-compose)
dpkg-deb -x "$work"/deb/docker-compose_*.deb "$work/root"
mkdir -p "$dest/cli-plugins"
install -m 0755 "$work/root/usr/libexec/docker/cli-plugins/docker-compose" \
  "$dest/cli-plugins/docker-compose.tmp"
mv -f "$dest/cli-plugins/docker-compose.tmp" "$dest/cli-plugins/docker-compose"
echo "setup: docker compose v2 peer: $("$dest/cli-plugins/docker-compose" version)"
