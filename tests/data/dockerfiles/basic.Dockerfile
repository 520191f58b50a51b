FROM busybox:dyk
ENV A=1 B="two words" C=c\ d
ENV OLD legacy form value
LABEL org.example.name="web app" version=1.0
EXPOSE 80 443/tcp 53/udp 8000-8002
USER nobody
WORKDIR /srv
WORKDIR app
VOLUME /data /logs
VOLUME ["/cache"]
STOPSIGNAL SIGTERM
CMD ["nginx", "-g", "daemon off;"]
