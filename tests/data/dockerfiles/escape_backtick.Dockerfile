# escape=`
FROM busybox:dyk
RUN echo c:\windows\path `
    next
ENV P=C:\dir
WORKDIR C:\dir
