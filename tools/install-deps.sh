#!/bin/sh
# Installs what skein needs to build and test on Debian 12 (bookworm):
# libedit for `skein chat`; zsh and man-db for the tests of the shell
# completions and of the manual page.
# As root it runs apt-get; otherwise it prints the exact command and fails,
# so `make` never half-builds against missing libraries.
set -eu
pkgs="gcc make cmake pkg-config liblua5.4-dev lua5.4 libcurl4-openssl-dev libcjson-dev libpcre2-dev libsqlite3-dev libedit-dev zsh man-db libyaml-dev"
missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "skein needs:$missing (Debian package names); install their equivalents" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "skein needs packages that are not installed. Run:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
fi
echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $missing
