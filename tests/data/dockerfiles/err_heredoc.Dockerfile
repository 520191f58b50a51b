FROM busybox:dyk
RUN <<EOT
echo never ends
