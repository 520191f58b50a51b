FROM busybox:dyk AS a
