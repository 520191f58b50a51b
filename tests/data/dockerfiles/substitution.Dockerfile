FROM busybox:dyk
ENV NAME=world FILE=archive.tar.gz
ENV A='$NAME' B="$NAME" C=\$NAME D=${NAME}s E=$NAME-x
ENV F=${FILE%%.*} G=${FILE#*.} H=${FILE/tar/zip} I=${MISSING-default} J=${NAME:-x}
ENV K="a \"quoted\" word"
