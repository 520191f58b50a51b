FROM busybox:dyk AS base
RUN echo base
FROM base AS build
RUN echo build
FROM busybox:dyk AS other
RUN echo other
FROM scratch
COPY --from=build /etc/passwd /p
COPY --from=1 /etc/group /g
