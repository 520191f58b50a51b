"""The Dockerfile corpus under tests/data/dockerfiles: each NAME.Dockerfile has a
NAME.json with what the front end must make of it (AST, stages, the final config
of the metadata instructions, or the error with its line); "buildable" ones are also
built through the daemon (tests/compat/test_daemon_build.py), where their config and
"tree" (path -> content, null: it exists) are checked in the image."""

from __future__ import annotations

import json
from pathlib import Path

from dockyard.build import config as cfgmod
from dockyard.build import instructions as ins
from dockyard.build import parser, stages
from dockyard.errors import DockyardError

CORPUS = Path(__file__).resolve().parent.parent / "data" / "dockerfiles"


def evaluate(text: str, build_args: dict | None = None, target: str = "") -> dict:
    """Parse and plan a Dockerfile, apply its metadata instructions (starting from an
    empty config for every stage); RUN/COPY/ADD change no config."""
    try:
        df = parser.parse(text)
        nodes = [parser.dump(n) for n in df.nodes]
        plan = stages.plan(df, build_args or {}, target)
        out_stages = []
        for st_ in plan.stages:
            st = cfgmod.StageState({}, escape=df.escape)
            consumed: set[str] = set()
            for instr in st_.steps:
                if isinstance(instr, ins.Arg):
                    cfgmod.apply_arg(instr, st, build_args or {}, plan.meta_args, consumed)
                elif instr.node.cmd in ("run", "copy", "add"):
                    if instr.node.cmd == "run":
                        cfgmod.command(instr, st)  # type: ignore[arg-type]
                    continue
                else:
                    cfgmod.apply(instr, st)
            out_stages.append({"name": st_.name, "base": st_.base, "deps": sorted(st_.deps),
                               "config": st.config, "args": st.args})
        return {"ast": nodes, "stages": out_stages, "needed": plan.needed,
                "total_steps": plan.total_steps, "warnings": df.warnings}
    except DockyardError as e:
        return {"error": str(e)}


def cases() -> list[str]:
    return sorted(p.name.removesuffix(".Dockerfile") for p in CORPUS.glob("*.Dockerfile"))


def expected(name: str) -> dict:
    return json.loads((CORPUS / f"{name}.json").read_text())


def options(name: str) -> dict:
    exp = expected(name)
    return {"build_args": exp.get("build_args"), "target": exp.get("target", "")}


if __name__ == "__main__":  # regenerate: python tests/unit/build_corpus.py NAME...
    import sys

    for name in sys.argv[1:] or cases():
        path = CORPUS / f"{name}.json"
        opts = json.loads(path.read_text()) if path.exists() else {}
        keep = {k: opts[k] for k in ("build_args", "target", "tree", "buildable") if k in opts}
        got = evaluate((CORPUS / f"{name}.Dockerfile").read_text(), keep.get("build_args"),
                       keep.get("target", ""))
        path.write_text(json.dumps({**keep, **got}, indent=1, sort_keys=True) + "\n")
        print(name, json.dumps(got)[:3000])
