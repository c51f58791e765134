#!/bin/sh
# Usage: make-archive.sh FILENAME SECRET_BASE64
set -eu
mkdir -p /tmp/build/docs
echo "$2" | base64 -d > "/tmp/build/docs/$1"
tar -C /tmp/build -czf /home/student/archive.tar.gz docs
chown student:student /home/student/archive.tar.gz
rm -rf /tmp/build
cat > /home/student/README <<TXT
Extract $1 from archive.tar.gz and print its contents.
TXT
