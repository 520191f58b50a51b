FROM busybox:dyk
COPY onlyone
