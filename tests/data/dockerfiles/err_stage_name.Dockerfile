FROM busybox:dyk AS 1bad
