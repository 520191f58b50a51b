FROM busybox:dyk
RUN <<EOT
echo hello
echo $HOME
EOT
RUN <<-EOT sh
	echo tabs stripped
	EOT
COPY <<EOF /etc/greeting
Hello ${NAME:-world}
EOF
COPY <<'EOF' /etc/raw
Keep $NAME
EOF
RUN cat /etc/greeting
