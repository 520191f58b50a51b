"""`dockyard login` and `dockyard logout`, like docker's.

Credentials live in <config dir>/config.json ("auths"), the file the docker CLI
and the docker SDK read (dockyard.client.auth). The daemon checks them against
the registry (the Engine API's POST /auth), as dockerd does for `docker login`.
"""

from __future__ import annotations

import getpass
import os
import sys

from dockyard.errors import InvalidArgument

LOGIN_USAGE = """Usage:  dockyard login [OPTIONS] [SERVER]

Authenticate to a registry.
Defaults to Docker Hub if no server is specified.

Options:
  -p, --password string   Password
      --password-stdin    Take the password from stdin
  -u, --username string   Username
"""

LOGOUT_USAGE = """Usage:  dockyard logout [SERVER]

Log out from a registry.
If no server is specified, the default is defined by the daemon.
"""

DEFAULT_SERVER = "https://index.docker.io/v1/"
STORE_WARNING = """WARNING! Your password will be stored unencrypted in {path}.
Configure a credential helper to remove this warning. See
https://docs.docker.com/engine/reference/commandline/login/#credential-stores
"""


def _parse(argv: list[str]) -> tuple[dict, list[str]]:
    opts: dict = {}
    rest: list[str] = []
    names = {"-u": "username", "--username": "username", "-p": "password",
             "--password": "password"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if arg in ("-h", "--help"):
            opts["help"] = True
        elif arg == "--password-stdin":
            opts["password_stdin"] = True
        elif name in names:
            if not eq:
                i += 1
                if i >= len(argv):
                    raise InvalidArgument(f"flag needs an argument: {name}")
                value = argv[i]
            opts[names[name]] = value
        elif arg.startswith("-") and len(arg) > 2 and arg[1] in "up" and arg[:2] in names:
            opts[names[arg[:2]]] = arg[2:]  # -ualice
        elif arg.startswith("-") and arg != "-":
            raise InvalidArgument(f"unknown flag: {name}")
        else:
            rest.append(arg)
        i += 1
    return opts, rest


def _display_name(server: str) -> str:
    from dockyard.client.auth import credentials_key

    return credentials_key(server)


def login(argv: list[str], ctx) -> int:
    try:
        opts, rest = _parse(argv)
    except InvalidArgument as e:
        print(f"{e}\nSee 'dockyard login --help'.", file=sys.stderr)
        return 125
    if opts.get("help"):
        print(LOGIN_USAGE, end="")
        return 0
    if len(rest) > 1:
        print('"dockyard login" requires at most 1 argument.\nSee \'dockyard login --help\'.',
              file=sys.stderr)
        return 1
    from dockyard.client.auth import ConfigFile, hostname

    server = rest[0] if rest else DEFAULT_SERVER
    registry = hostname(server)
    store = ConfigFile(ctx.config_dir)
    username, password = opts.get("username"), opts.get("password")
    if opts.get("password_stdin"):
        if password is not None:
            print("Error: --password and --password-stdin are mutually exclusive",
                  file=sys.stderr)
            return 1
        if not username:
            print("Error: Must provide --username with --password-stdin", file=sys.stderr)
            return 1
        password = sys.stdin.read().rstrip("\r\n")
    elif password is not None:
        print("WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
              file=sys.stderr)

    stored = store.get(registry)
    if username is None and password is None and stored is not None:
        print("Authenticating with existing credentials...")
        if _check(ctx, registry, *stored) is None:
            print("Login Succeeded")
            return 0
    if not username or password is None:
        if not sys.stdin.isatty():
            print("Error: Cannot perform an interactive login from a non TTY device",
                  file=sys.stderr)
            return 1
        if registry in ("docker.io", "index.docker.io") or server == DEFAULT_SERVER:
            print("Log in with your Docker ID or email address to push and pull images "
                  "from Docker Hub.")
        if not username:
            hint = f" ({stored[0]})" if stored else ""
            username = input(f"Username{hint}: ").strip() or (stored[0] if stored else "")
            if not username:
                print("Error: Username is required", file=sys.stderr)
                return 1
        if password is None:
            password = getpass.getpass("Password: ")
    if not password:
        print("Error: Password is required", file=sys.stderr)
        return 1
    error = _check(ctx, registry, username, password)
    if error is not None:
        print(error, file=sys.stderr)
        return 1
    try:
        store.set(registry, username, password)
    except OSError as e:
        print(f"Error saving credentials: {e}", file=sys.stderr)
        return 1
    print(STORE_WARNING.format(path=os.path.join(ctx.config_dir, "config.json")),
          file=sys.stderr)
    print("Login Succeeded")
    return 0


def _check(ctx, registry: str, username: str, password: str) -> str | None:
    """None when the daemon's registry check (POST /auth) accepts the credentials, else
    the error line to show."""
    from dockyard.client.api import Client
    from dockyard.errors import DockyardError

    body = {"username": username, "password": password, "serveraddress": registry}
    try:
        with Client(getattr(ctx, "host", None)) as client:
            client.post("/auth", body=body)
    except DockyardError as e:
        if type(e).__name__ == "CannotConnect":  # not an answer from the daemon
            return str(e)
        return f"Error response from daemon: {e}"
    return None


def logout(argv: list[str], ctx) -> int:
    try:
        opts, rest = _parse(argv)
    except InvalidArgument as e:
        print(f"{e}\nSee 'dockyard logout --help'.", file=sys.stderr)
        return 125
    if opts.get("help"):
        print(LOGOUT_USAGE, end="")
        return 0
    if len(rest) > 1 or opts:
        print('"dockyard logout" requires at most 1 argument.\nSee \'dockyard logout --help\'.',
              file=sys.stderr)
        return 1
    from dockyard.client.auth import ConfigFile

    server = rest[0] if rest else DEFAULT_SERVER
    print(f"Removing login credentials for {_display_name(server)}")
    try:
        ConfigFile(ctx.config_dir).remove(server)
    except OSError as e:
        print(f"WARNING: could not erase credentials: {e}", file=sys.stderr)
    return 0
