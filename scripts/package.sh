#!/usr/bin/env bash
# Builds keyward's .deb and .rpm packages.
#
#   bash scripts/package.sh
#
# 1. installs cargo-deb 3.8.0 and cargo-generate-rpm 0.21.1 (cargo install --locked) if missing;
# 2. cargo build --release (the binary and the pam_keyward.so cdylib) in its
#    own target directory, target/package/ (CARGO_TARGET_DIR overrides it),
#    so that a concurrent `cargo build --release` in target/ can never
#    rewrite a binary while it is being packaged;
# 3. copies both into the staging directory <target>/release/keyward-pkg/
#    and strips the copies (the pam_sm_* symbols stay: they are dynamic),
#    then generates the gzipped man pages and the bash/zsh/fish completions
#    (with the staged `keyward completions SHELL`) next to them;
# 4. cargo deb --no-build and cargo generate-rpm, with the layout declared in
#    Cargo.toml ([package.metadata.deb] / [package.metadata.generate-rpm];
#    their `target/release/` paths mean the target directory in use).
#
# Prints the paths of both packages on its last two lines:
#   deb: /…/target/package/debian/keyward_<version>-1_amd64.deb
#   rpm: /…/target/package/generate-rpm/keyward-<version>-1.x86_64.rpm
#
# Packaging files: packaging/ (config, man pages, maintainer scripts, RPM
# scriptlets, sysusers/tmpfiles, examples) and systemd/ (units).
set -euo pipefail

cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target/package}"

log() { printf 'package.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# The versions the [package.metadata.*] sections were written and checked
# with (an already installed version is used as it is).
for spec in deb@3.8.0 generate-rpm@0.21.1; do
    tool=${spec%@*}
    if ! cargo "$tool" --version >/dev/null 2>&1 && ! cargo "$tool" --help >/dev/null 2>&1; then
        log "installing cargo-$spec"
        cargo install --locked "cargo-$spec"
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

stage="$release/keyward-pkg"
rm -rf "$stage"
mkdir -p "$stage"
install -m 755 "$release/keyward" "$stage/keyward"
install -m 644 "$release/libpam_keyward.so" "$stage/libpam_keyward.so"
# --strip-unneeded keeps the dynamic symbol table (the PAM entry points).
strip --strip-unneeded "$stage/keyward" "$stage/libpam_keyward.so"
# -n: no name/timestamp in the gzip header (reproducible, lintian wants it).
gzip -9n -c packaging/keyward.8 >"$stage/keyward.8.gz"
gzip -9n -c packaging/keyward.toml.5 >"$stage/keyward.toml.5.gz"
"$stage/keyward" completions bash >"$stage/keyward.bash"
"$stage/keyward" completions zsh >"$stage/_keyward"
"$stage/keyward" completions fish >"$stage/keyward.fish"
for f in "$stage"/*; do
    [ -s "$f" ] || die "generated $f is empty"
done
chmod 644 "$stage"/*
chmod 755 "$stage/keyward"

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
