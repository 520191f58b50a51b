FROM busybox:dyk
ENV A=1 B
