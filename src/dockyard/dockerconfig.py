"""docker's client configuration file, <config dir>/config.json: the credentials under
"auths" ({"<registry>": {"auth": base64("user:password")}}), read and rewritten
atomically, every other key kept. The CLI (client/auth.py) and the registry client
(registry/auth_client.py) share it; standard library only, so the CLI stays light.
Credential helpers (credsStore/credHelpers) are not run.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile

from dockyard.errors import DockyardError

DOCKER_HUB = "docker.io"
DOCKER_HUB_KEY = "https://index.docker.io/v1/"
HUB_NAMES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io",
                       "registry.hub.docker.com"})


def hostname(address: str) -> str:
    """A registry address (`host:port`, a URL, `docker.io`) -> its lower-case host[:port]."""
    text = address.strip()
    for scheme in ("https://", "http://"):
        text = text.removeprefix(scheme)
    return text.split("/", 1)[0].lower()


def credentials_key(registry: str) -> str:
    """The config.json key docker uses for `registry`."""
    host = hostname(registry)
    return DOCKER_HUB_KEY if host in HUB_NAMES else host



class ConfigFile:
    """<config_dir>/config.json: read, and rewritten atomically (mode 0600) keeping
    every key we do not know."""

    def __init__(self, config_dir: str) -> None:
        self.config_dir = config_dir
        self.path = os.path.join(config_dir, "config.json")

    def load(self) -> dict:
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read()
        except FileNotFoundError:
            return {}
        if not text.strip():
            return {}
        try:
            doc = json.loads(text)
        except ValueError as e:
            raise DockyardError(f"invalid client config {self.path}: {e}") from None
        if not isinstance(doc, dict):
            raise DockyardError(f"invalid client config {self.path}: not a JSON object")
        return doc

    def _auths(self, doc: dict) -> dict:
        auths = doc.get("auths")
        if not isinstance(auths, dict):
            auths = doc["auths"] = {}
        return auths

    @staticmethod
    def _find(auths: dict, registry: str) -> str | None:
        """The key of `registry`'s entry; entries stored as URLs match by host."""
        key = credentials_key(registry)
        if key in auths:
            return key
        host = hostname(registry)
        for k in auths:
            kh = hostname(k)
            if kh == host or (host in HUB_NAMES and kh in HUB_NAMES):
                return k
        return None

    def get(self, registry: str) -> tuple[str, str] | None:
        """(username, password) stored for `registry`, if any."""
        auths = self._auths(self.load())
        key = self._find(auths, registry)
        entry = auths.get(key) if key else None
        if not isinstance(entry, dict):
            return None
        if entry.get("auth"):
            try:
                user, sep, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise DockyardError(f"invalid auth entry for {key} in {self.path}") from None
            if sep:
                return user, password
        if entry.get("username") and entry.get("password"):
            return str(entry["username"]), str(entry["password"])
        return None

    def set(self, registry: str, user: str, password: str) -> None:
        doc = self.load()
        auths = self._auths(doc)
        old = self._find(auths, registry)
        if old is not None:
            del auths[old]
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        auths[credentials_key(registry)] = {"auth": token}
        self._write(doc)

    def remove(self, registry: str) -> bool:
        """Forget `registry`'s credentials; False when there were none."""
        doc = self.load()
        auths = doc.get("auths")
        if not isinstance(auths, dict):
            return False
        removed = False
        while (key := self._find(auths, registry)) is not None:
            del auths[key]
            removed = True
        if removed:
            self._write(doc)
        return removed

    def _write(self, doc: dict) -> None:
        os.makedirs(self.config_dir, mode=0o700, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".config.json.", dir=self.config_dir)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent="\t")
                f.write("\n")
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise
        dfd = os.open(self.config_dir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)  # the rename survives a crash
        finally:
            os.close(dfd)
