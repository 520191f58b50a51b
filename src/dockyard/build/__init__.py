"""The Dockyard builder: Dockerfile parsing, .dockerignore, build contexts, the cache and
the executor that turns stages into images through the engine (issue 7)."""
