FROM busybox:dyk
CMD ["default"]
ENTRYPOINT ["/bin/echo"]
