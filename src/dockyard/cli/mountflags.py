"""docker's -v/--volume and --mount flag syntax -> Binds, Config.Volumes, Mounts.

The client side of docker/cli's opts/mount.go and volume spec handling: -v with
a source goes to HostConfig.Binds (the daemon validates it), -v /path alone to
Config.Volumes (an anonymous volume); --mount becomes a mount.Mount object.
"""

from __future__ import annotations

from typing import Any

from dockyard.cli.runflags import FlagError, ram_in_bytes

_TRUE, _FALSE = ("1", "true", "yes", "t", "True", "TRUE"), ("0", "false", "no", "f",
                                                               "False", "FALSE")
_BARE = {"readonly", "ro", "volume-nocopy", "bind-nonrecursive"}


def split_volumes(specs: list[str]) -> tuple[list[str], dict[str, dict]]:
    """-v values -> (Binds, Config.Volumes)."""
    binds: list[str] = []
    anonymous: dict[str, dict] = {}
    for spec in specs:
        if not spec:
            raise FlagError("invalid empty volume spec")
        parts = spec.split(":")
        if len(parts) == 1 or (len(parts) == 2 and not parts[0]):
            anonymous[parts[-1]] = {}
        else:
            binds.append(spec)
    return binds, anonymous


def _flag_bool(key: str, value: str) -> bool:
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise FlagError(f"invalid value for {key}: {value}")


def parse_mount(spec: str) -> dict[str, Any]:
    """--mount type=volume|bind|tmpfs,source=,target=,readonly,volume-nocopy,
    volume-label=k=v,volume-opt=k=v,volume-driver=,bind-propagation=,
    bind-nonrecursive,tmpfs-size=,tmpfs-mode= -> docker's mount.Mount."""
    m: dict[str, Any] = {}
    bind: dict[str, Any] = {}
    volume: dict[str, Any] = {}
    tmpfs: dict[str, Any] = {}
    kind = "volume"
    for part in spec.split(","):
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq:
            if key not in _BARE:
                raise FlagError(f"invalid field '{part}' must be a key=value pair")
            value = "true"
        if key == "type":
            kind = value
        elif key in ("source", "src"):
            m["Source"] = value
        elif key in ("target", "destination", "dst"):
            m["Target"] = value
        elif key in ("readonly", "ro"):
            m["ReadOnly"] = _flag_bool(key, value)
        elif key == "consistency":
            m["Consistency"] = value
        elif key == "bind-propagation":
            bind["Propagation"] = value
        elif key == "bind-nonrecursive":
            bind["NonRecursive"] = _flag_bool(key, value)
        elif key == "volume-nocopy":
            volume["NoCopy"] = _flag_bool(key, value)
        elif key == "volume-label":
            k, _, v = value.partition("=")
            volume.setdefault("Labels", {})[k] = v
        elif key == "volume-driver":
            volume.setdefault("DriverConfig", {})["Name"] = value
        elif key == "volume-opt":
            k, _, v = value.partition("=")
            volume.setdefault("DriverConfig", {}).setdefault("Options", {})[k] = v
        elif key == "tmpfs-size":
            try:
                tmpfs["SizeBytes"] = ram_in_bytes(value, "tmpfs-size")
            except FlagError:
                raise FlagError(f"invalid value for {key}: {value}") from None
        elif key == "tmpfs-mode":
            try:
                tmpfs["Mode"] = int(value, 8)
            except ValueError:
                raise FlagError(f"invalid value for {key}: {value}") from None
        else:
            raise FlagError(f"unexpected key '{key}' in '{part}'")
    m["Type"] = kind
    if not m.get("Target"):
        raise FlagError("target is required")
    for prefix, opts, own in (("bind", bind, "bind"), ("volume", volume, "volume"),
                              ("tmpfs", tmpfs, "tmpfs")):
        if opts and kind != own:
            raise FlagError(f"cannot mix '{prefix}-*' options with mount type '{kind}'")
    if bind:
        m["BindOptions"] = bind
    if volume:
        m["VolumeOptions"] = volume
    if tmpfs:
        m["TmpfsOptions"] = tmpfs
    return m
