# escape=x
FROM busybox:dyk
