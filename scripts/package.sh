#!/usr/bin/env bash
# Builds keyward's .deb and .rpm packages.
#
#   bash scripts/package.sh
#
# 1. installs cargo-deb and cargo-generate-rpm (cargo install --locked) if missing;
# 2. cargo build --release (the binary and the pam_keyward.so cdylib);
# 3. strips both (symbols pam_sm_* stay: they are dynamic), generates the
#    gzipped man pages and the bash/zsh/fish completions (with the freshly
#    built `keyward completions SHELL`) into <target>/release/keyward-pkg/;
# 4. cargo deb --no-build and cargo generate-rpm, with the layout declared in
#    Cargo.toml ([package.metadata.deb] / [package.metadata.generate-rpm]).
#
# Prints the paths of both packages on its last two lines:
#   deb: /…/target/debian/keyward_<version>-1_amd64.deb
#   rpm: /…/target/generate-rpm/keyward-<version>-1.x86_64.rpm
#
# Packaging files: packaging/ (config, man pages, maintainer scripts, RPM
# scriptlets, sysusers/tmpfiles, examples) and systemd/ (units).
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

log() { printf 'package.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

for tool in deb generate-rpm; do
    if ! cargo "$tool" --version >/dev/null 2>&1 && ! cargo "$tool" --help >/dev/null 2>&1; then
        log "installing cargo-$tool"
        cargo install --locked "cargo-$tool"
    fi
done
command -v gzip >/dev/null || die "gzip is missing"

meta=$(cargo metadata --format-version 1 --no-deps)
read -r version target_dir < <(python3 -c '
import json, sys
m = json.load(sys.stdin)
p = next(p for p in m["packages"] if p["name"] == "keyward")
print(p["version"], m["target_directory"])' <<<"$meta")

# The Debian changelog's newest entry must be this version (revision 1):
# lintian and dpkg read the version from it.
changelog_version=$(sed -n '1s/^keyward (\([^)]*\)).*/\1/p' packaging/changelog)
[ "$changelog_version" = "$version-1" ] ||
    die "packaging/changelog starts with $changelog_version, Cargo.toml says $version: add a changelog entry for $version-1"

log "building release $version"
cargo build --release
release="$target_dir/release"
[ -x "$release/keyward" ] || die "$release/keyward was not built"
[ -f "$release/libpam_keyward.so" ] || die "$release/libpam_keyward.so was not built"
# --strip-unneeded keeps the dynamic symbol table (the PAM entry points).
strip --strip-unneeded "$release/keyward" "$release/libpam_keyward.so"

stage="$release/keyward-pkg"
rm -rf "$stage"
mkdir -p "$stage"
# -n: no name/timestamp in the gzip header (reproducible, lintian wants it).
gzip -9n -c packaging/keyward.8 >"$stage/keyward.8.gz"
gzip -9n -c packaging/keyward.toml.5 >"$stage/keyward.toml.5.gz"
"$release/keyward" completions bash >"$stage/keyward.bash"
"$release/keyward" completions zsh >"$stage/_keyward"
"$release/keyward" completions fish >"$stage/keyward.fish"
for f in "$stage"/*; do
    [ -s "$f" ] || die "generated $f is empty"
done
chmod 644 "$stage"/*

log "cargo deb"
mkdir -p "$target_dir/debian"
deb=$(cargo deb --no-build --output "$target_dir/debian/" | tail -n 1)
[ -f "$deb" ] || die "cargo deb did not report a package (got: $deb)"

log "cargo generate-rpm"
mkdir -p "$target_dir/generate-rpm"
rpm="$target_dir/generate-rpm/keyward-$version-1.x86_64.rpm"
rm -f "$rpm"
cargo generate-rpm --output "$rpm" >&2
[ -f "$rpm" ] || die "cargo generate-rpm did not write $rpm"

echo "deb: $deb"
echo "rpm: $rpm"
