# The offline base image `ua-busybox:latest`: Debian's static busybox on
# scratch, with a `student` user. Built by scripts/build-busybox-base; the
# tests build it the same way. Nothing is pulled.
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
# Debian's busybox has no adduser: write the account files directly.
RUN mkdir -p /etc /tmp /root /home/student /usr/bin \
 && ln -s /bin/env /usr/bin/env \
 && echo 'root:x:0:0:root:/root:/bin/sh' > /etc/passwd \
 && echo 'student:x:1000:1000:student:/home/student:/bin/sh' >> /etc/passwd \
 && echo 'root:x:0:' > /etc/group \
 && echo 'student:x:1000:' >> /etc/group \
 && chown 1000:1000 /home/student \
 && chmod 1777 /tmp
ENV PATH=/bin:/usr/bin
CMD ["/bin/sh"]
