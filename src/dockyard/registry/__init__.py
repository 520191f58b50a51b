"""The registry: the distribution client (pull, push, auth) and `dockyard registry serve`."""
