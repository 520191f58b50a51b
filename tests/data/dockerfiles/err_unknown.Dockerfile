FROM busybox:dyk
RUN true

# comment
ENV A=1
LABEL a=b
RUNN make
