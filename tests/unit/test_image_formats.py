"""Manifests, indexes, platforms, chain IDs, image IDs and configs."""

import hashlib
import json

import pytest

from dockyard.errors import InvalidArgument, NotFound
from dockyard.image import formats as f

EMPTY_TAR_DIFF_ID = "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef"
D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64


def desc(mt=f.DOCKER_LAYER_GZIP, digest=D1, size=10, **kw):
    return {"mediaType": mt, "size": size, "digest": digest, **kw}


# -- IDs --------------------------------------------------------------------------

def test_chain_ids_known_value():
    # image-tools' TestChainID (computed there with openssl in bash)
    diff_ids = [
        "sha256:8b2564fc821995bf961877c06e676591297178a4438293ec1c2e20f66855d3a8",
        "sha256:ecf239b31bd1723014debab23dd82b3b4b87114e3254370c366f7f712fb9b075",
        "sha256:eab89ad04ba05c973e3fb95f9b10a2875a18779d9977743c779c8238aa3fd742",
    ]
    chain = f.chain_ids(diff_ids)
    assert chain[0] == diff_ids[0]
    assert chain[2] == "sha256:26ab43e7d8f84043e608d1be92d9918a8aa6860489b6f221f29bc49d0081c3c3"


def test_chain_ids_by_hand():
    assert f.chain_ids([]) == []
    assert f.chain_ids([EMPTY_TAR_DIFF_ID]) == [EMPTY_TAR_DIFF_ID]
    c2 = "sha256:" + hashlib.sha256(f"{EMPTY_TAR_DIFF_ID} {D1}".encode()).hexdigest()
    c3 = "sha256:" + hashlib.sha256(f"{c2} {D2}".encode()).hexdigest()
    assert f.chain_ids([EMPTY_TAR_DIFF_ID, D1, D2]) == [EMPTY_TAR_DIFF_ID, c2, c3]
    with pytest.raises(InvalidArgument):
        f.chain_ids(["nope"])


def test_empty_tar_diff_id_constant():
    assert "sha256:" + hashlib.sha256(bytes(1024)).hexdigest() == EMPTY_TAR_DIFF_ID


def test_image_id_is_digest_of_exact_bytes():
    a = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
    b = a.replace(b",", b", ")
    assert f.image_id(a) == "sha256:" + hashlib.sha256(a).hexdigest()
    assert f.image_id(a) != f.image_id(b)


# -- manifests ------------------------------------------------------------------

DOCKER_PUSHED = """{
   "schemaVersion": 2,
   "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
   "config": {
      "mediaType": "application/vnd.docker.container.image.v1+json",
      "size": 1457,
      "digest": "CONFIG"
   },
   "layers": [
      {
         "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
         "size": 2220094,
         "digest": "LAYER"
      }
   ]
}""".replace("CONFIG", D1).replace("LAYER", D2)


def test_make_manifest_is_byte_identical_to_docker():
    out = f.make_manifest(desc(f.DOCKER_CONFIG, D1, 1457), [desc(digest=D2, size=2220094)])
    assert out == DOCKER_PUSHED.encode()
    assert not out.endswith(b"\n")


def test_make_manifest_descriptor_order_and_oci():
    cfg = {"digest": D1, "size": 3, "mediaType": f.OCI_CONFIG}
    out = f.make_manifest(cfg, [desc(f.OCI_LAYER_ZSTD, D2, 5, urls=["http://x/a&b"])],
                          oci=True, annotations={"k": "<v>"})
    text = out.decode()
    assert text.index('"mediaType": "application/vnd.oci.image.config') < text.index('"size": 3')
    assert text.index('"size": 3') < text.index(f'"digest": "{D1}"')
    assert "\\u0026" in text and "\\u003cv\\u003e" in text  # Go's HTML escaping
    doc = f.parse_manifest(out, f.OCI_MANIFEST)
    assert doc["mediaType"] == f.OCI_MANIFEST and doc["annotations"] == {"k": "<v>"}


def test_parse_manifest_docker():
    doc = f.parse_manifest(DOCKER_PUSHED.encode(), f.DOCKER_MANIFEST)
    assert doc["config"]["digest"] == D1 and not f.is_index(doc)


def test_parse_manifest_without_media_type_fields():
    raw = json.dumps({"schemaVersion": 2, "config": desc(f.OCI_CONFIG), "layers": []}).encode()
    assert f.parse_manifest(raw, None)["mediaType"] == f.OCI_MANIFEST
    assert f.parse_manifest(raw, "application/json")["mediaType"] == f.OCI_MANIFEST
    idx = json.dumps({"schemaVersion": 2, "manifests": [desc(f.OCI_MANIFEST)]}).encode()
    doc = f.parse_manifest(idx, None)
    assert doc["mediaType"] == f.OCI_INDEX and f.is_index(doc)


@pytest.mark.parametrize("doc, words", [
    ({"schemaVersion": 2, "mediaType": f.OCI_INDEX, "manifests": [], "layers": []},
     "both manifests and layers"),
    ({"schemaVersion": 2, "config": desc(f.OCI_CONFIG), "layers": [], "manifests": []},
     "both manifests and layers"),
    ({"schemaVersion": 1, "name": "x"}, "schema 1"),
    ({"schemaVersion": 3, "config": desc(), "layers": []}, "schemaVersion"),
    ({"schemaVersion": "2", "config": desc(), "layers": []}, "schemaVersion"),
    ({"schemaVersion": True, "config": desc(), "layers": []}, "schemaVersion"),
    ({"schemaVersion": 2, "layers": []}, "config descriptor"),
    ({"schemaVersion": 2, "config": desc(), "layers": {}}, "layers is not a list"),
    ({"schemaVersion": 2, "config": desc(), "layers": [desc(size=-1)]}, "bad size"),
    ({"schemaVersion": 2, "config": desc(), "layers": [desc(size=True)]}, "bad size"),
    ({"schemaVersion": 2, "config": desc(), "layers": [desc(size=1.5)]}, "bad size"),
    ({"schemaVersion": 2, "config": desc(), "layers": [desc(digest="sha256:12")]},
     "layers[0] digest"),
    ({"schemaVersion": 2, "config": desc(), "layers": [desc(mt="")]}, "bad mediaType"),
    ({"schemaVersion": 2, "config": desc(), "layers": [desc(mt=None)]}, "bad mediaType"),
    ({"schemaVersion": 2, "config": desc(), "layers": ["x"]}, "not an object"),
    ({"schemaVersion": 2, "mediaType": f.OCI_INDEX, "manifests": [desc(platform="x")]},
     "bad platform"),
    ({"schemaVersion": 2, "mediaType": f.OCI_INDEX, "manifests": {}}, "not a list"),
    ({"schemaVersion": 2, "mediaType": "text/plain", "config": desc(), "layers": []},
     "unsupported manifest media type"),
    ([], "not a JSON object"),
])
def test_parse_manifest_refuses(doc, words):
    with pytest.raises(InvalidArgument, match=words.replace("[", r"\[").replace("]", r"\]")):
        f.parse_manifest(json.dumps(doc).encode(), None)


def test_parse_manifest_refuses_garbage_and_mismatch():
    with pytest.raises(InvalidArgument, match="not JSON"):
        f.parse_manifest(b"\xff{", None)
    with pytest.raises(InvalidArgument, match="does not match"):
        f.parse_manifest(DOCKER_PUSHED.encode(), f.OCI_MANIFEST)
    with pytest.raises(InvalidArgument, match="schema 1"):
        f.parse_manifest(b"{}", f.DOCKER_MANIFEST_V1_SIGNED)


# -- platforms ------------------------------------------------------------------

def plat_desc(arch, variant=None, os="linux", digest=D1):
    p = {"architecture": arch, "os": os}
    if variant:
        p["variant"] = variant
    return desc(f.DOCKER_MANIFEST, digest, 500, platform=p)


def index_of(*descs):
    return {"schemaVersion": 2, "mediaType": f.DOCKER_MANIFEST_LIST, "manifests": list(descs)}


def test_select_linux_amd64():
    idx = index_of(plat_desc("arm", "v7", digest=D1), plat_desc("amd64", digest=D2),
                   plat_desc("arm64", "v8", digest=D3))
    assert f.select_platform(idx)["digest"] == D2
    assert f.select_platform(idx, architecture="arm64")["digest"] == D3
    assert f.select_platform(idx, architecture="arm", variant="v7")["digest"] == D1
    assert f.select_platform(idx, architecture="arm")["digest"] == D1  # arm means arm/v7


def test_select_amd64_variants():
    # plain amd64 takes a variant-less or v1 entry, not v2/v3
    idx = index_of(plat_desc("amd64", "v3", digest=D1), plat_desc("amd64", "v1", digest=D2))
    assert f.select_platform(idx)["digest"] == D2
    idx = index_of(plat_desc("amd64", "v3", digest=D1))
    with pytest.raises(NotFound, match="no matching manifest for linux/amd64"):
        f.select_platform(idx)
    # amd64/v3 prefers v3, then v2, then plain
    idx = index_of(plat_desc("amd64", digest=D1), plat_desc("amd64", "v2", digest=D2))
    assert f.select_platform(idx, variant="v3")["digest"] == D2
    # x86_64 is amd64; amd64 falls back to 386
    idx = index_of(plat_desc("386", digest=D3))
    assert f.select_platform(idx, architecture="x86_64")["digest"] == D3


def test_select_prefers_exact_over_fallback_and_first_on_tie():
    idx = index_of(plat_desc("386", digest=D1), plat_desc("amd64", digest=D2),
                   plat_desc("amd64", digest=D3))
    assert f.select_platform(idx)["digest"] == D2


def test_select_skips_attestations_and_other_os():
    idx = index_of(desc(f.OCI_MANIFEST, D1, 1, platform={"architecture": "unknown",
                                                         "os": "unknown"}),
                   plat_desc("amd64", os="windows", digest=D2),
                   desc(f.OCI_MANIFEST, D3, 1))
    with pytest.raises(NotFound):
        f.select_platform(idx)


def test_select_arm64_falls_back_to_arm():
    idx = index_of(plat_desc("arm", "v6", digest=D1), plat_desc("arm", "v7", digest=D2))
    assert f.select_platform(idx, architecture="arm64")["digest"] == D2
    assert f.select_platform(idx, architecture="aarch64", variant="v8")["digest"] == D2


def test_normalize_platform():
    assert f.normalize_platform("Linux", "x86_64") == ("linux", "amd64", "")
    assert f.normalize_platform("linux", "aarch64", "v8") == ("linux", "arm64", "")
    assert f.normalize_platform("linux", "armhf") == ("linux", "arm", "v7")
    assert f.normalize_platform("linux", "i386") == ("linux", "386", "")


# -- layers, time, configs ------------------------------------------------------

def test_layer_types():
    assert f.layer_compression(f.DOCKER_LAYER_GZIP) == "gzip"
    assert f.layer_compression(f.OCI_LAYER_ZSTD) == "zstd"
    assert f.layer_compression(f.OCI_LAYER) is None
    assert f.is_foreign(f.DOCKER_LAYER_FOREIGN) and not f.is_foreign(f.OCI_LAYER_GZIP)
    with pytest.raises(InvalidArgument, match="unsupported layer media type"):
        f.layer_compression("text/plain")


def test_times():
    assert f.format_time(0) == "1970-01-01T00:00:00Z"
    assert f.format_time(1700000000.25) == "2023-11-14T22:13:20.25Z"
    assert f.parse_time("2023-11-14T22:13:20.25Z") == 1700000000.25
    assert f.parse_time("2023-11-14T23:13:20.123456789+01:00") == pytest.approx(1700000000.123456789)
    assert f.parse_time("garbage") == 0.0 and f.parse_time(None) == 0.0


def test_new_config_shape_and_order():
    cfg = f.new_config([EMPTY_TAR_DIFF_ID], config={"Cmd": ["sh"], "Env": ["A=1"]},
                       created="2024-01-01T00:00:00Z", architecture="amd64",
                       comment="Imported from -")
    raw = f.encode_config(cfg)
    assert raw.startswith(b'{"comment":"Imported from -","created":"2024-01-01T00:00:00Z",'
                          b'"config":{"Hostname":"","Domainname":"","User":""')
    parsed = f.parse_config(raw)
    assert parsed["rootfs"] == {"type": "layers", "diff_ids": [EMPTY_TAR_DIFF_ID]}
    assert parsed["config"]["Cmd"] == ["sh"] and parsed["config"]["Entrypoint"] is None
    assert parsed["history"] == [{"created": "2024-01-01T00:00:00Z", "comment": "Imported from -"}]
    assert list(parsed)[-3:] == ["os", "rootfs", "history"]
    assert f.diff_ids(parsed) == [EMPTY_TAR_DIFF_ID]
    assert f.image_id(raw) == f.image_id(f.encode_config(cfg))  # deterministic
    assert "," + '"' not in raw.decode().replace(',"', "")  # compact: no spaces
    assert b" " not in raw.replace(b"Imported from -", b"")


def test_container_config_keeps_unknown_and_omits_empty():
    out = f.container_config({"ExposedPorts": {}, "Labels": {"a": "b"}, "X-Extra": 1})
    assert "ExposedPorts" not in out and out["Labels"] == {"a": "b"}
    assert list(out)[-1] == "X-Extra"


@pytest.mark.parametrize("raw", [
    b"[]", b"{}", b'{"rootfs":{"type":"layers","diff_ids":["x"]}}',
    b'{"rootfs":{"type":"other","diff_ids":[]}}', b"nope",
])
def test_parse_config_refuses(raw):
    with pytest.raises(InvalidArgument, match="invalid image config"):
        f.parse_config(raw)


def test_make_index():
    out = f.make_index([plat_desc("amd64")])
    doc = f.parse_manifest(out, f.OCI_INDEX)
    assert f.select_platform(doc)["digest"] == D1
