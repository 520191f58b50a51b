FROM busybox:dyk
COPY --frm=x a b
