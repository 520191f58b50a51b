"""The Dockerfile front end: the corpus under tests/data/dockerfiles (ASTs, stages,
configs, errors with line numbers), variable substitution and instruction checks."""

from __future__ import annotations

import pytest
from build_corpus import cases, evaluate, expected

from dockyard.build import config as cfgmod
from dockyard.build import expand, parser
from dockyard.build import instructions as ins
from dockyard.build.parser import DockerfileError


@pytest.mark.parametrize("name", cases())
def test_corpus(name: str) -> None:
    from build_corpus import CORPUS

    exp = expected(name)
    got = evaluate((CORPUS / f"{name}.Dockerfile").read_text(), exp.get("build_args"),
                   exp.get("target", ""))
    for key in ("build_args", "target", "tree", "buildable"):
        exp.pop(key, None)
    assert got == exp


def test_corpus_covers_every_instruction() -> None:
    from build_corpus import CORPUS

    seen = set()
    for name in cases():
        for node in expected(name).get("ast", []):
            seen.add(node["cmd"])
    assert seen >= set(parser.INSTRUCTIONS)
    assert any(n.startswith("err_") for n in cases()) and len(list(CORPUS.iterdir())) > 20


def test_error_names_file_and_line() -> None:
    with pytest.raises(DockerfileError) as e:
        parser.parse("FROM x\n\n\n\n\n\nRUNN make\n")
    assert str(e.value) == "Dockerfile:7: unknown instruction: RUNN"
    assert e.value.status == 400
    with pytest.raises(DockerfileError, match=r"^app.Dockerfile:2: "):
        parser.parse("FROM x\nBOGUS\n", "app.Dockerfile")


def test_crlf_and_bom() -> None:
    df = parser.parse("\ufeffFROM a\r\nRUN echo \\\r\n  b\r\n")
    assert [(n.cmd, n.args) for n in df.nodes] == [("from", "a"), ("run", "echo   b")]


def test_lowercase_instructions_and_tabs() -> None:
    df = parser.parse("from a\nrun\techo hi\n")
    assert [(n.cmd, n.args) for n in df.nodes] == [("from", "a"), ("run", "echo hi")]


def test_duplicate_directive() -> None:
    with pytest.raises(DockerfileError, match="only one escape parser directive"):
        parser.parse("# escape=`\n# escape=\\\nFROM a\n")


def test_flags_with_quoted_values() -> None:
    df = parser.parse('FROM a\nRUN --mount="type=bind,source=a b" echo\n')
    assert df.nodes[1].flags == ['--mount="type=bind,source=a b"']
    instr = ins.build(df.nodes[1])
    assert instr.flags["mount"] == ["type=bind,source=a b"]


def test_bool_flag_values() -> None:
    df = parser.parse("FROM a\nCOPY --link=false a b\nCOPY --link=maybe a b\n")
    assert ins.build(df.nodes[1]).flags["link"] is False
    with pytest.raises(DockerfileError, match="expecting boolean"):
        ins.build(df.nodes[2])


# -- substitution ------------------------------------------------------------------------

ENV = {"A": "x", "EMPTY": "", "P": "dir/file.tar.gz"}


@pytest.mark.parametrize("text,want", [
    ("$A", "x"), ("${A}", "x"), ("${A}y", "xy"), ("$Ay", ""), ("a$", "a$"),
    ("${UNSET}", ""), ("${UNSET:-d}", "d"), ("${EMPTY:-d}", "d"), ("${EMPTY-d}", ""),
    ("${A:+set}", "set"), ("${EMPTY:+set}", ""), ("${EMPTY+set}", "set"),
    ("${UNSET:-$A}", "x"), ("${UNSET:-'q w'}", "q w"),
    ("'$A'", "$A"), ('"$A"', "x"), ("\\$A", "$A"), ('"\\$A"', "$A"), ('"a\\b"', "a\\b"),
    ('"\\""', '"'), ("a\\ b", "a b"),
    ("${P%%.*}", "dir/file"), ("${P%.*}", "dir/file.tar"), ("${P#*/}", "file.tar.gz"),
    ("${P##*.}", "gz"), ("${P/tar/zip}", "dir/file.zip.gz"), ("${P//a/_}", "dir/file.t_r.gz"),
])
def test_word(text: str, want: str) -> None:
    assert expand.word(text, ENV) == want


def test_words_split_on_unquoted_space_only() -> None:
    assert expand.words('a "b c" d\\ e $A', ENV) == ["a", "b c", "d e", "x"]
    assert expand.words("$SPACED", {"SPACED": "not split"}) == ["not split"]


def test_backtick_escape() -> None:
    assert expand.word("a`$A`b", ENV, "`") == "a$Ab"
    assert expand.word("c:\\dir", ENV, "`") == "c:\\dir"


@pytest.mark.parametrize("text,message", [
    ("${A", "missing '}'"), ("${:-x}", "bad substitution"), ("'open", "single-quote"),
    ('"open', "double-quote"), ("${UNSET:?must be set}", "UNSET: must be set"),
])
def test_word_errors(text: str, message: str) -> None:
    with pytest.raises(expand.ExpandError, match=message):
        expand.word(text, ENV)


# -- instruction semantics ----------------------------------------------------------------------

def _state(text: str, image_config: dict | None = None) -> cfgmod.StageState:
    df = parser.parse(text)
    st = cfgmod.StageState.from_image_config(image_config or {"Cmd": ["sh"]})
    for node in df.nodes[1:]:
        cfgmod.apply(ins.build(node), st)
    return st


def test_entrypoint_resets_inherited_cmd() -> None:
    st = _state("FROM a\nENTRYPOINT [\"/e\"]\n")
    assert st.config["Cmd"] is None and st.config["Entrypoint"] == ["/e"]
    st = _state("FROM a\nCMD [\"c\"]\nENTRYPOINT [\"/e\"]\n")
    assert st.config["Cmd"] == ["c"]


def test_stage_gets_default_path() -> None:
    st = _state("FROM a\nENV X=1\n")
    assert st.config["Env"][0].startswith("PATH=/usr/local/sbin:")
    st = _state("FROM a\nENV X=1\n", {"Env": ["PATH=/mine"]})
    assert st.config["Env"] == ["PATH=/mine", "X=1"]


def test_shell_changes_shell_form() -> None:
    st = _state('FROM a\nSHELL ["/bin/bash", "-c"]\nCMD echo hi\n')
    assert st.config["Cmd"] == ["/bin/bash", "-c", "echo hi"]


def test_env_overrides_arg_in_substitution() -> None:
    df = parser.parse("FROM a\nARG V=arg\nENV V=env\nLABEL v=$V\n")
    st = cfgmod.StageState({})
    cfgmod.apply_arg(ins.build(df.nodes[1]), st, {}, {}, set())  # type: ignore[arg-type]
    cfgmod.apply(ins.build(df.nodes[2]), st)
    cfgmod.apply(ins.build(df.nodes[3]), st)
    assert st.config["Labels"] == {"v": "env"}
    assert "V=env" in st.run_env() and "V=arg" not in st.run_env()


def test_run_env_has_args_not_persisted() -> None:
    df = parser.parse("FROM a\nARG TOKEN=s3cret\n")
    st = cfgmod.StageState({})
    cfgmod.apply_arg(ins.build(df.nodes[1]), st, {}, {}, set())  # type: ignore[arg-type]
    assert "TOKEN=s3cret" in st.run_env()
    assert not any("TOKEN" in e for e in st.config.get("Env") or [])


def test_heredoc_run_commands() -> None:
    df = parser.parse("FROM a\nRUN <<EOT\necho 1\nEOT\nRUN cat <<EOT > /f\nx\nEOT\n")
    st = cfgmod.StageState({})
    assert cfgmod.command(ins.build(df.nodes[1]), st) == ["/bin/sh", "-c", "echo 1\n"]
    assert cfgmod.command(ins.build(df.nodes[2]), st) == [
        "/bin/sh", "-c", "cat <<EOT > /f\nx\nEOT\n"]


def test_stopsignal_checked() -> None:
    with pytest.raises(DockerfileError, match="Invalid signal"):
        _state("FROM a\nSTOPSIGNAL NOPE\n")


def test_duration_parser() -> None:
    assert ins.parse_duration("1m30s", "x") == 90 * 10**9
    assert ins.parse_duration("250ms", "x") == 250 * 10**6
    with pytest.raises(DockerfileError):
        ins.parse_duration("5", "x")
