FROM busybox:dyk
RUN ["echo", "exec form"]
RUN [ "echo", "spaces" ]
RUN [not json
CMD echo shell form
ENTRYPOINT ["/entry.sh"]
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
HEALTHCHECK --interval=30s --timeout=3s --start-period=1m30s --retries=3 CMD curl -f http://localhost/ || exit 1
