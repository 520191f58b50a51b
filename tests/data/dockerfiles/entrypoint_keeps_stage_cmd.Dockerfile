FROM busybox:dyk
ENTRYPOINT ["/old"]
CMD ["arg"]
ENTRYPOINT /bin/echo shell
