"""Reference parsing and normalisation, against docker's (distribution/reference) cases."""

import dataclasses

import pytest

from dockyard.errors import InvalidArgument
from dockyard.image.reference import Reference, is_id_prefix, parse, parse_repository

D = "sha256:" + "ab" * 32
HEX64 = "0123456789abcdef" * 4

# input -> (domain, path, tag, digest, familiar)
VALID = [
    ("busybox", "docker.io", "library/busybox", "latest", None, "busybox:latest"),
    ("debian", "docker.io", "library/debian", "latest", None, "debian:latest"),
    ("library/debian", "docker.io", "library/debian", "latest", None, "debian:latest"),
    ("docker/docker", "docker.io", "docker/docker", "latest", None, "docker/docker:latest"),
    ("docker.io/debian", "docker.io", "library/debian", "latest", None, "debian:latest"),
    ("docker.io/library/debian", "docker.io", "library/debian", "latest", None, "debian:latest"),
    ("docker.io/docker/docker", "docker.io", "docker/docker", "latest", None,
     "docker/docker:latest"),
    ("index.docker.io/debian", "docker.io", "library/debian", "latest", None, "debian:latest"),
    ("index.docker.io/library/debian:9", "docker.io", "library/debian", "9", None, "debian:9"),
    ("index.docker.io/docker/docker", "docker.io", "docker/docker", "latest", None,
     "docker/docker:latest"),
    ("docker.io/library/foo/bar", "docker.io", "library/foo/bar", "latest", None,
     "library/foo/bar:latest"),
    ("docker.io/foo/bar/baz", "docker.io", "foo/bar/baz", "latest", None, "foo/bar/baz:latest"),
    ("127.0.0.1:5000/docker/docker", "127.0.0.1:5000", "docker/docker", "latest", None,
     "127.0.0.1:5000/docker/docker:latest"),
    ("127.0.0.1:5000/library/debian", "127.0.0.1:5000", "library/debian", "latest", None,
     "127.0.0.1:5000/library/debian:latest"),
    ("127.0.0.1:5000/debian", "127.0.0.1:5000", "debian", "latest", None,
     "127.0.0.1:5000/debian:latest"),
    ("localhost/debian", "localhost", "debian", "latest", None, "localhost/debian:latest"),
    ("localhost/library/debian", "localhost", "library/debian", "latest", None,
     "localhost/library/debian:latest"),
    ("localhost:5000/test:latest", "localhost:5000", "test", "latest", None,
     "localhost:5000/test:latest"),
    (f"localhost:5000/a/b:t@{D}", "localhost:5000", "a/b", "t", D, f"localhost:5000/a/b:t@{D}"),
    (f"busybox@{D}", "docker.io", "library/busybox", None, D, f"busybox@{D}"),
    (f"docker.io/library/busybox@{D}", "docker.io", "library/busybox", None, D, f"busybox@{D}"),
    (f"busybox:1.36@{D}", "docker.io", "library/busybox", "1.36", D, f"busybox:1.36@{D}"),
    ("192.168.0.1", "docker.io", "library/192.168.0.1", "latest", None, "192.168.0.1:latest"),
    ("192.168.1.1:5000/x", "192.168.1.1:5000", "x", "latest", None, "192.168.1.1:5000/x:latest"),
    ("foo_bar.com:8080", "docker.io", "library/foo_bar.com", "8080", None, "foo_bar.com:8080"),
    ("foo/foo_bar.com:8080", "docker.io", "foo/foo_bar.com", "8080", None,
     "foo/foo_bar.com:8080"),
    ("test.com:tag", "docker.io", "library/test.com", "tag", None, "test.com:tag"),
    ("test:5000/repo", "test:5000", "repo", "latest", None, "test:5000/repo:latest"),
    ("test:5000/repo:tag", "test:5000", "repo", "tag", None, "test:5000/repo:tag"),
    ("sub-dom1.foo.com/bar/baz/quux", "sub-dom1.foo.com", "bar/baz/quux", "latest", None,
     "sub-dom1.foo.com/bar/baz/quux:latest"),
    ("sub-dom1.foo.com/bar/baz/quux:some-long-tag", "sub-dom1.foo.com", "bar/baz/quux",
     "some-long-tag", None, "sub-dom1.foo.com/bar/baz/quux:some-long-tag"),
    ("b.gcr.io/test.example.com/my-app:test.example.com", "b.gcr.io", "test.example.com/my-app",
     "test.example.com", None, "b.gcr.io/test.example.com/my-app:test.example.com"),
    ("xn--n3h.com/myimage:xn--n3h.com", "xn--n3h.com", "myimage", "xn--n3h.com", None,
     "xn--n3h.com/myimage:xn--n3h.com"),
    ("a.b.c/d/e/f:g", "a.b.c", "d/e/f", "g", None, "a.b.c/d/e/f:g"),
    ("[2001:db8::1]/repo", "[2001:db8::1]", "repo", "latest", None, "[2001:db8::1]/repo:latest"),
    ("[2001:db8::1]:5000/repo:t", "[2001:db8::1]:5000", "repo", "t", None,
     "[2001:db8::1]:5000/repo:t"),
    ("[::1]:5000/x", "[::1]:5000", "x", "latest", None, "[::1]:5000/x:latest"),
    ("Docker.io/foo", "Docker.io", "foo", "latest", None, "Docker.io/foo:latest"),
    ("FOO.com/bar", "FOO.com", "bar", "latest", None, "FOO.com/bar:latest"),
    ("a/a__b", "docker.io", "a/a__b", "latest", None, "a/a__b:latest"),
    ("a/a_b.c-d", "docker.io", "a/a_b.c-d", "latest", None, "a/a_b.c-d:latest"),
    ("a/a---b", "docker.io", "a/a---b", "latest", None, "a/a---b:latest"),
    ("foo:_tag", "docker.io", "library/foo", "_tag", None, "foo:_tag"),
    ("foo:Tag.With-Upper_1", "docker.io", "library/foo", "Tag.With-Upper_1", None,
     "foo:Tag.With-Upper_1"),
    ("foo:" + "a" * 128, "docker.io", "library/foo", "a" * 128, None, "foo:" + "a" * 128),
    (HEX64 + ":tag", "docker.io", f"library/{HEX64}", "tag", None, f"{HEX64}:tag"),
    ("0" * 63, "docker.io", "library/" + "0" * 63, "latest", None, "0" * 63 + ":latest"),
    ("thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "docker.io",
     "library/thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev", "latest", None,
     "thisisthesongthatneverendsitgoesonandonandonthisisthesongthatnev:latest"),
]


@pytest.mark.parametrize("text, domain, path, tag, digest, familiar", VALID)
def test_valid(text, domain, path, tag, digest, familiar):
    ref = parse(text)
    assert (ref.domain, ref.path, ref.tag, ref.digest) == (domain, path, tag, digest)
    assert ref.familiar() == familiar
    assert str(ref) == f"{domain}/{path}" + (f":{tag}" if tag else "") + (
        f"@{digest}" if digest else "")
    # the canonical string parses back to the same reference
    assert parse(str(ref)) == ref


# input -> words the message must contain
INVALID = [
    ("", "invalid reference format"),
    (":", "invalid reference format"),
    (":justtag", "invalid reference format"),
    (f"@{D}", "invalid reference format"),
    ("/a", "invalid reference format"),
    ("a/", "invalid reference format"),
    ("a//b", "invalid reference format"),
    ("-foo", "invalid reference format"),
    ("foo-", "invalid reference format"),
    ("a/-a", "invalid reference format"),
    ("a/a-", "invalid reference format"),
    ("a/a___b", "invalid reference format"),
    ("a/a..b", "invalid reference format"),
    ("a/.a", "invalid reference format"),
    ("aa/asdf$$^/aa", "invalid reference format"),
    ("foo bar", "invalid reference format"),
    ("foo:", "invalid reference format"),
    ("foo:-tag", "invalid reference format"),
    ("foo:.tag", "invalid reference format"),
    ("foo:" + "a" * 129, "invalid reference format"),
    ("foo:t@g", "invalid reference format"),
    ("foo@sha256:abc", "invalid reference format"),
    ("foo@sha256:" + "f" * 34, "invalid checksum digest length"),
    ("foo@sha256:" + "F" * 64, "invalid checksum digest format"),
    ("validname@invaliddigest:" + "f" * 32, "unsupported digest algorithm"),
    ("Uppercase:tag", "must be lowercase"),
    ("BUSYBOX", "repository name (library/BUSYBOX) must be lowercase"),
    ("foo/BAR:tag", "must be lowercase"),
    ("localhost:5000/Foo", "must be lowercase"),
    ("docker.io/Foo", "must be lowercase"),
    (HEX64, "cannot specify 64-byte hexadecimal strings"),
    ("[fe80::1%eth0]:5000/repo", "invalid reference format"),
    ("[2001:db8::1]:5000", "invalid reference format"),
    ("a.b:port/repo", "invalid reference format"),
    ("example.com:5000:6000/repo", "invalid reference format"),
    ("a" * 256, "must not be more than 255 characters"),
    ("example.com/" + "a/" * 127 + "a", "must not be more than 255 characters"),
    ("ünïcode", "invalid reference format"),
    ("foo:tag\n", "invalid reference format"),
]


@pytest.mark.parametrize("text, words", INVALID)
def test_invalid(text, words):
    with pytest.raises(InvalidArgument) as e:
        parse(text)
    assert words in str(e.value)


def test_hex64_message_like_docker():
    with pytest.raises(InvalidArgument) as e:
        parse(HEX64)
    assert str(e.value) == (
        f"invalid repository name ({HEX64}), cannot specify 64-byte hexadecimal strings")


def test_default_tag_off():
    ref = parse("busybox", default_tag=False)
    assert ref.tag is None and ref.familiar() == "busybox" and str(ref) == "docker.io/library/busybox"
    assert parse(f"busybox@{D}").tag is None


def test_names_and_with():
    ref = parse("busybox")
    assert ref.name == "docker.io/library/busybox"
    assert ref.familiar_name == "busybox"
    assert ref.with_tag("1.36").familiar() == "busybox:1.36"
    assert ref.with_digest(D).familiar() == f"busybox:latest@{D}"
    assert ref.repository == Reference("docker.io", "library/busybox")
    with pytest.raises(InvalidArgument, match="invalid tag format"):
        ref.with_tag("-bad")
    with pytest.raises(InvalidArgument, match="invalid digest format"):
        ref.with_digest("sha256:123")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.tag = "x"  # type: ignore[misc]
    assert hash(parse("busybox")) == hash(parse("docker.io/library/busybox:latest"))


def test_parse_repository():
    assert parse_repository("busybox") == Reference("docker.io", "library/busybox")
    with pytest.raises(InvalidArgument):
        parse_repository("busybox:1")


@pytest.mark.parametrize("text, expected", [
    ("abc", True), ("0123456789ab", True), (HEX64, True), (f"sha256:{HEX64}", True),
    ("sha256:abc", True), ("busybox", False), ("ABC", False), ("", False),
    (HEX64 + "0", False), ("sha512:abc", False),
])
def test_is_id_prefix(text, expected):
    assert is_id_prefix(text) is expected
