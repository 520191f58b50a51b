FROM busybox:dyk
EXPOSE 80/tcp abc
