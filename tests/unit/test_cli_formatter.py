"""docker's --format subset, tables and human units."""

import pytest

from dockyard.cli.formatter import (
    Template,
    human_duration,
    human_size,
    print_formatted,
    render_table,
)
from dockyard.errors import InvalidArgument

IMAGE = {"Repository": "busybox", "Tag": "latest", "ID": "a416a98b71e2",
         "Labels": {"maintainer": "me"}, "Names": ["a", "b"], "Size": "4.26MB"}


@pytest.mark.parametrize("fmt, expected", [
    ("{{.Repository}}:{{.Tag}}", "busybox:latest"),
    ("{{json .Labels}}", '{"maintainer":"me"}'),
    ("{{json .Names}}", '["a","b"]'),
    ("{{upper .Tag}} {{lower .Repository}} {{title .Tag}}", "LATEST busybox Latest"),
    ('{{join .Names ","}}', "a,b"),
    ('{{index .Labels "maintainer"}}', "me"),
    ("{{truncate .ID 4}}", "a416"),
    ("ID\\t{{.ID}}", "ID\ta416a98b71e2"),
    ("{{.Names}} {{.Labels}}", "[a b] map[maintainer:me]"),
    ("{{ .Tag }}", "latest"),
])
def test_render(fmt, expected):
    assert Template(fmt).render(IMAGE) == expected


@pytest.mark.parametrize("fmt, words", [
    ("{{.Nope}}", "can't evaluate field Nope"),
    ("{{frobnicate .ID}}", 'function "frobnicate" not defined'),
    ("{{.ID", "unclosed action"),
    ("{{.ID .Tag}}", "non-function"),
])
def test_bad_templates(fmt, words):
    with pytest.raises(InvalidArgument, match=words):
        Template(fmt).render(IMAGE)


def test_table_header_and_alignment(capsys):
    print_formatted([IMAGE, {**IMAGE, "Repository": "registry.local/app", "Tag": "1"}],
                    "table {{.Repository}}\t{{.Tag}}\t{{.ID}}", {"ID": "IMAGE ID"})
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAG", "IMAGE", "ID"]
    assert lines[0].index("TAG") == lines[1].index("latest") == lines[2].index("1   ")
    assert lines[2].startswith("registry.local/app   1")


def test_render_table_last_column_not_padded():
    assert render_table([["a", "bb"], ["ccc", "d"]]) == "a         bb\nccc       d\n"
    assert render_table([["REPOSITORY", "TAG"]]) == "REPOSITORY   TAG\n"


@pytest.mark.parametrize("size, text", [(0, "0B"), (999, "999B"), (1000, "1kB"),
                                        (1234567, "1.23MB"), (4_400_000_000, "4.4GB"),
                                        (72_800_000, "72.8MB")])
def test_human_size(size, text):
    assert human_size(size) == text


@pytest.mark.parametrize("seconds, text", [(0.5, "Less than a second"), (1, "1 second"),
                                           (59, "59 seconds"), (60, "About a minute"),
                                           (3000, "50 minutes"), (3600, "About an hour"),
                                           (5 * 3600, "5 hours"), (3 * 86400, "3 days"),
                                           (21 * 86400, "3 weeks"), (90 * 86400, "3 months"),
                                           (800 * 86400, "2 years")])
def test_human_duration(seconds, text):
    assert human_duration(seconds) == text
