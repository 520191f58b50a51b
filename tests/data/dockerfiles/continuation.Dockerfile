# a comment before anything
FROM busybox:dyk

RUN echo one \
    two \
# a comment inside a continuation is dropped
    three

RUN echo a \

    b
LABEL a=1 \
      b=2
