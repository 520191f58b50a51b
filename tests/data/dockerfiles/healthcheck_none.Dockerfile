FROM busybox:dyk
HEALTHCHECK NONE
ONBUILD RUN echo triggered
ONBUILD COPY . /src
MAINTAINER someone <a@b.c>
