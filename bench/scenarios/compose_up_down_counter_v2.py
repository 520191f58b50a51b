"""The counter-app's `compose up -d` + `compose down -v` (as compose_up_down_counter),
with docker compose v2 as the reference: Debian unstable's docker-compose 2.x, the
plugin scripts/compose-v2-peer.sh unpacks under the venv, run standalone against the
private dockerd. The reference side's web-fe image is built by docker-compose 1.29
(compose v2 builds through buildx, which these machines do not have)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from bench.scenario import Skip
from bench.scenarios.compose_up_down_counter import FILES, PROJECT, ComposeUpDownCounter

COMPOSE_V2 = Path(sys.prefix) / "libexec" / "compose-v2" / "cli-plugins" / "docker-compose"


class ComposeUpDownCounterV2(ComposeUpDownCounter):
    name = "compose_up_down_counter_v2"
    description = (
        "`compose up -d` + `compose down -v` of the counter-app, images built beforehand: "
        "`dockyard compose` against `dockyard daemon` vs docker compose v2 (Debian's "
        "2.x package) against a private dockerd 20.10."
    )
    reference_label = "docker compose v2"
    # the target (<= 0.25) is against docker-compose 1.29 (compose_up_down_counter);
    # this row is the same work against today's docker compose, for information
    target = None
    target_ratio = None
    building = False  # setup builds the reference's image with docker-compose 1.29

    def setup(self, workdir: Path) -> None:
        if not os.access(COMPOSE_V2, os.X_OK):
            raise Skip(f"{COMPOSE_V2} missing (scripts/compose-v2-peer.sh)")
        self.building = True
        try:
            super().setup(workdir)
        finally:
            self.building = False

    def _argv(self, side: str, *args: str) -> tuple[list[str], dict[str, str]]:
        if side == "ours" or self.building:
            return super()._argv(side, *args)
        env = self.peers.env(side)
        files = [x for f in FILES for x in ("-f", str(self.dir / f))]
        return [str(COMPOSE_V2), *files, "-p", PROJECT, *args], env

SCENARIO = ComposeUpDownCounterV2()
