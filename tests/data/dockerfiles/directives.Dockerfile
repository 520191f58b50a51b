# syntax=docker/dockerfile:1
# check=skip=all
# unknown=ignored
FROM busybox:dyk
# escape=`
RUN echo \
  x
