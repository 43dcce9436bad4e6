#!/usr/bin/env bash
# Build dockfw_<version>_<arch>.deb from a release build, with dpkg-deb only.
# Usage: packaging/build-deb.sh [OUTDIR]   (default: target/debian)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/target/debian}"
# The first `version = "…"` line (the package's); sed stops there itself: no `| head`,
# which under pipefail can kill sed with SIGPIPE.
version="$(sed -n '/^version = "\(.*\)"/{s//\1/p;q;}' "$root/Cargo.toml")"
arch="$(dpkg --print-architecture)"

cargo build --release --manifest-path "$root/Cargo.toml"

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$root/target/release/dockfw" "$stage/usr/bin/dockfw"
install -D -m 0644 "$root/config/policy.toml" "$stage/etc/dockfw/policy.toml"
install -D -m 0644 "$root/systemd/dockfw.service" "$stage/lib/systemd/system/dockfw.service"
install -D -m 0644 "$root/README.md" "$stage/usr/share/doc/dockfw/README.md"
install -d "$stage/DEBIAN"
for script in postinst prerm; do
    install -m 0755 "$root/packaging/debian/$script" "$stage/DEBIAN/$script"
done
echo /etc/dockfw/policy.toml >"$stage/DEBIAN/conffiles"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" \
    "$root/packaging/debian/control.in" >"$stage/DEBIAN/control"

mkdir -p "$out"
deb="$out/dockfw_${version}_${arch}.deb"
dpkg-deb --root-owner-group --build "$stage" "$deb" >/dev/null
echo "$deb"
