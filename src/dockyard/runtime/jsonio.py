"""JSON for the runtime's hot path, without importing `re` and `enum`.

`import json` costs ~6 ms here, nearly all of it `re` (and `enum`, which `re`
imports), used only for whitespace and number patterns on json's pure-Python
paths. The C accelerator those paths sit on, `_json`, is the same code json
itself runs; this module drives it directly. Errors, rare, still go through
json for its messages. Anything but the runtime should simply use json.
"""

try:
    from _json import encode_basestring_ascii as _encode_str
    from _json import make_encoder as _make_encoder
    from _json import make_scanner as _make_scanner
except ImportError:  # an interpreter without the accelerator: plain json
    _make_scanner = None

_WHITESPACE = " \t\n\r"


class _DecoderContext:
    """The attributes _json's scanner reads from a json.JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"),
                      "NaN": float("nan")}.__getitem__


def loads(text: str | bytes):
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if _make_scanner is not None:
        stripped = text.strip(_WHITESPACE)
        try:
            value, end = _make_scanner(_DecoderContext())(stripped, 0)
        except StopIteration:
            pass  # not JSON: let json say why
        else:
            if end == len(stripped):
                return value
    import json
    return json.loads(text)


def load(f):
    return loads(f.read())


def dumps(obj) -> str:
    """Compact JSON (`json.dumps` with its default separators, ASCII only)."""
    if _make_scanner is None:
        import json
        return json.dumps(obj)
    encode = _make_encoder(None, _not_serializable, _encode_str, None, ": ", ", ",
                           False, False, True)
    return "".join(encode(obj, 0))


def dump(obj, f) -> None:
    f.write(dumps(obj))


def _not_serializable(obj):
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")
