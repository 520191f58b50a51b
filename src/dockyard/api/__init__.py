"""The Docker Engine API served by `dockyard daemon`.

server.py builds the aiohttp application: version prefixes (/v1.24 .. /v1.41 and
unversioned paths), the error middleware (DockyardError -> status + {"message"}),
and the plumbing between handlers and the synchronous services they call in
worker threads (JSON progress streams, request bodies, byte streams).

One module per API area (system.py, images.py; containers, exec, networks,
volumes, build come next), each with `register(routes: Routes) -> None` adding
its handlers; server.AREAS lists the modules. Handlers reach the engine through
`request.app[server.BACKEND]`, an `ApiBackend`.
"""
