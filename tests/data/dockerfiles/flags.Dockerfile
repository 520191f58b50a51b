FROM --platform=$BUILDPLATFORM busybox:dyk AS b
RUN --mount=type=cache,target=/root/.cache --network=none echo cached
COPY --chown=1000:1000 --chmod=640 --link a /a
ADD --checksum=sha256:0123 --chown=nobody http://127.0.0.1/x /x
COPY --parents --exclude=*.tmp src/ /dst/
