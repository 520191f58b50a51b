#!/usr/bin/env bash
# Installs everything Dockyard needs on a Debian 12 machine, as root.
# Idempotent: packages already present and an up-to-date venv are left alone.
set -euo pipefail
cd "$(dirname "$0")/.."

DEB_PACKAGES=(
  busybox-static      # the tiny rootfs for tests and the demo
  debootstrap         # `dockyard image bootstrap`: the offline base images
  python3 python3-venv python3-dev
  python3-seccomp     # libseccomp's own Python binding
  runc                # the reference runtime (benchmarks, comparisons)
  docker.io containerd  # the real dockerd as a peer in tests
  iptables iproute2 procps util-linux
  skopeo docker-registry apache2-utils  # registry server peers (skopeo, Distribution, htpasswd)
  python3-cryptography  # the registry token-auth test signs its JWTs (x5c, RS256)
  gcc libc6-dev       # tests build a static probe for syscalls busybox has no applet for
  python3-yaml        # compose files (PyYAML)
  docker-compose      # the reference Compose for `make bench` (compose_up_down)
)

missing=()
for p in "${DEB_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # docker.io's postinst tries to start a service; it must not here.
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

VENV=.venv
stamp=$VENV/.installed
if [ ! -x $VENV/bin/python ]; then
  echo "setup: creating $VENV"
  /usr/bin/python3 -m venv --system-site-packages $VENV
fi
if [ ! -f $stamp ] || [ pyproject.toml -nt $stamp ]; then
  echo "setup: installing the project into $VENV"
  $VENV/bin/pip install -q --upgrade pip
  $VENV/bin/pip install -q -e '.[test,bench]'
  touch $stamp
fi
# pip's console scripts pay for every .pth file on the machine at each start
$VENV/bin/python -m dockyard.devtools.launcher
# compiled once here: the runtime must not pay for compiling at every start
$VENV/bin/python -m compileall -q src >/dev/null
# --init's PID 1 (our own C, src/dockyard/native/init.c): static, so it needs nothing
# from the container's root; rebuilt only when the source is newer than the binary
INIT_BIN=$VENV/libexec/dockyard-init
if [ ! -x $INIT_BIN ] || [ src/dockyard/native/init.c -nt $INIT_BIN ]; then
  echo "setup: building $INIT_BIN"
  mkdir -p $VENV/libexec
  gcc -static -Os -Wall -o $INIT_BIN.tmp src/dockyard/native/init.c
  strip $INIT_BIN.tmp
  mv -f $INIT_BIN.tmp $INIT_BIN
fi
# docker compose v2 as a test peer (Debian 12 has only v1): see the script
bash scripts/compose-v2-peer.sh $VENV/libexec/compose-v2 \
  || echo "setup: no docker compose v2 peer; the tests that need it skip"
