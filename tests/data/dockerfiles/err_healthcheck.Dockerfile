FROM busybox:dyk
HEALTHCHECK --interval=xyz CMD true
