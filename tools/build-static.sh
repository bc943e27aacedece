#!/usr/bin/env bash
# Builds the shipped tfttp: stripped (profile "dist") and statically linked, with musl when
# that Rust target is installed or can be added, otherwise glibc with crt-static. Checks with
# `file` and `ldd` that the result is static and at most MAX_BYTES (default 2 MiB), and
# prints its path and size, then packs it with the manual page as
# target/TARGET/dist/tfttp-VERSION-TARGET.tar.gz (bin/tfttp, share/man/man1/tfttp.1.gz), to
# unpack under /usr/local or any prefix. Usage: tools/build-static.sh
set -euo pipefail
cd "$(dirname "$0")/.."
max=${MAX_BYTES:-2097152}
arch=$(uname -m)
musl="$arch-unknown-linux-musl"
if rustup target list --installed 2>/dev/null | grep -qx "$musl" \
   || timeout 120 rustup target add "$musl" >/dev/null 2>&1; then
  target=$musl
  flags=""
else
  # glibc's static libc: getaddrinfo still loads NSS modules at run time, so give numeric
  # addresses (or names from /etc/hosts) to this build.
  target="$arch-unknown-linux-gnu"
  flags="-C target-feature=+crt-static"
fi
RUSTFLAGS="$flags" cargo build --quiet --profile dist --target "$target" --bin tfttp
bin="target/$target/dist/tfttp"
fail() { echo "build-static: $*" >&2; exit 1; }
file -L "$bin" | grep -Eq "statically linked|static-pie linked" || fail "$bin is not static: $(file -L "$bin")"
ldd "$bin" 2>&1 | grep -Eq "not a dynamic executable|statically linked" || fail "ldd finds dynamic dependencies in $bin"
size=$(stat -c %s "$bin")
"$bin" --version >/dev/null || fail "$bin does not run"
echo "static binary: $bin ($target), $size bytes (limit $max)"
[ "$size" -le "$max" ] || fail "$bin is larger than $max bytes"
# The package: the binary and its manual page, laid out for a prefix such as /usr/local.
version=$("$bin" --version | awk '{print $2}')
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -D -m 755 "$bin" "$stage/bin/tfttp"
install -d "$stage/share/man/man1"
gzip -9n < docs/tfttp.1 > "$stage/share/man/man1/tfttp.1.gz"
pkg="target/$target/dist/tfttp-$version-$target.tar.gz"
tar -C "$stage" --owner=0 --group=0 -czf "$pkg" bin share
echo "package: $pkg ($(tar -tzf "$pkg" | tr '\n' ' '))"
