FROM busybox:dyk
SHELL /bin/bash -c
