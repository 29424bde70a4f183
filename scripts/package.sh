#!/usr/bin/env bash
# Builds keyward's .deb and .rpm packages.
#
#   bash scripts/package.sh [--target TRIPLE] [--print-layout]
#
# --target: build for another Rust target (x86_64-unknown-linux-gnu or
# aarch64-unknown-linux-gnu; its std and a cross linker must be installed);
# the PAM module goes to that architecture's directory in both packages.
# --print-layout: print the architecture-dependent layout and exit.
#
# 1. installs cargo-deb 3.8.0 (cargo install --locked) if missing; the .rpm
#    needs rpmbuild (Debian's `rpm` package);
# 2. cargo build --release (the binary and the pam_keyward.so cdylib) in its
#    own target directory, target/package/ (CARGO_TARGET_DIR overrides it),
#    so that a concurrent `cargo build --release` in target/ can never
#    rewrite a binary while it is being packaged;
# 3. copies both into the staging directory <target>/release/keyward-pkg/
#    and strips the copies (the pam_sm_* symbols stay: they are dynamic),
#    then generates the gzipped man pages and the bash/zsh/fish completions
#    (with the staged `keyward completions SHELL`) next to them;
# 4. cargo deb --no-build, with the layout declared in Cargo.toml
#    ([package.metadata.deb]; its `target/release/` paths mean the target
#    directory in use), and rpmbuild with packaging/rpm/keyward.spec (which
#    owns every directory it creates: cargo-generate-rpm cannot), for the
#    target's RPM architecture.
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

target=""
print_layout=0
while [ $# -gt 0 ]; do
    case "$1" in
        --target) target="${2:?--target needs a value}"; shift 2 ;;
        --target=*) target="${1#--target=}"; shift ;;
        --print-layout) print_layout=1; shift ;;
        *) die "unknown argument $1 (usage: package.sh [--target TRIPLE] [--print-layout])" ;;
    esac
done
triple="${target:-$(rustc -vV | sed -n 's/^host: //p')}"
# The target's names in each packaging world. The PAM directory: Debian's
# multiarch /usr/lib/<tuple>/security, RPM's %{_libdir}/security (lib64 on
# these 64-bit architectures).
case "$triple" in
    x86_64-unknown-linux-gnu) multiarch=x86_64-linux-gnu deb_arch=amd64 rpm_arch=x86_64 ;;
    aarch64-unknown-linux-gnu) multiarch=aarch64-linux-gnu deb_arch=arm64 rpm_arch=aarch64 ;;
    *) die "unsupported target $triple (x86_64-unknown-linux-gnu or aarch64-unknown-linux-gnu)" ;;
esac
if [ "$print_layout" = 1 ]; then
    echo "target: $triple"
    echo "deb-arch: $deb_arch"
    echo "deb-pam: /usr/lib/$multiarch/security/pam_keyward.so"
    echo "rpm-arch: $rpm_arch"
    echo "rpm-pam: /usr/lib64/security/pam_keyward.so"
    exit 0
fi
target_args=()
[ -n "$target" ] && target_args=(--target "$target")

# The versions the [package.metadata.*] sections were written and checked
# with (an already installed version is used as it is).
for spec in deb@3.8.0; do
    tool=${spec%@*}
    if ! cargo "$tool" --version >/dev/null 2>&1 && ! cargo "$tool" --help >/dev/null 2>&1; then
        log "installing cargo-$spec"
        cargo install --locked "cargo-$spec"
    fi
done
command -v gzip >/dev/null || die "gzip is missing"
command -v rpmbuild >/dev/null || die "rpmbuild is missing (apt-get install rpm)"

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

log "building release $version for $triple"
cargo build --release "${target_args[@]}"
release="$target_dir/${target:+$target/}release"
[ -x "$release/keyward" ] || die "$release/keyward was not built"
[ -f "$release/libpam_keyward.so" ] || die "$release/libpam_keyward.so was not built"

stage="$release/keyward-pkg"
rm -rf "$stage"
mkdir -p "$stage"
install -m 755 "$release/keyward" "$stage/keyward"
install -m 644 "$release/libpam_keyward.so" "$stage/libpam_keyward.so"
# --strip-unneeded keeps the dynamic symbol table (the PAM entry points).
strip=strip
[ -n "$target" ] && [ "$multiarch" != "$(gcc -dumpmachine 2>/dev/null)" ] && strip="$multiarch-strip"
"$strip" --strip-unneeded "$stage/keyward" "$stage/libpam_keyward.so"
# The .deb takes the module from lib/<multiarch>/security/ (a glob asset).
install -D -m 644 "$stage/libpam_keyward.so" "$stage/lib/$multiarch/security/pam_keyward.so"
# -n: no name/timestamp in the gzip header (reproducible, lintian wants it).
gzip -9n -c packaging/keyward.8 >"$stage/keyward.8.gz"
gzip -9n -c packaging/keyward.toml.5 >"$stage/keyward.toml.5.gz"
gzip -9n -c packaging/pam_keyward.8 >"$stage/pam_keyward.8.gz"
# Completions come from a binary that runs here (a cross build's may not).
completer="$stage/keyward"
[ -n "$target" ] && ! "$completer" --version >/dev/null 2>&1 && completer="cargo run --quiet --release --"
$completer completions bash >"$stage/keyward.bash"
$completer completions zsh >"$stage/_keyward"
$completer completions fish >"$stage/keyward.fish"
for f in "$stage"/*; do
    [ -d "$f" ] || [ -s "$f" ] || die "generated $f is empty"
done
find "$stage" -type f -exec chmod 644 {} +
chmod 755 "$stage/keyward"

log "cargo deb"
mkdir -p "$target_dir/debian"
deb=$(cargo deb --no-build "${target_args[@]}" --output "$target_dir/debian/" | tail -n 1)
[ -f "$deb" ] || die "cargo deb did not report a package (got: $deb)"

log "rpmbuild"
top="$target_dir/rpmbuild"
rm -rf "$top"
mkdir -p "$target_dir/generate-rpm"
rpm="$target_dir/generate-rpm/keyward-$version-1.$rpm_arch.rpm"
rm -f "$rpm"
rpmbuild -bb --quiet --target "$rpm_arch" \
    --define "_topdir $top" --define "stage $stage" --define "repo $PWD" \
    --define "kw_version $version" packaging/rpm/keyward.spec >&2
mv "$top/RPMS/$rpm_arch/keyward-$version-1.$rpm_arch.rpm" "$rpm"
[ -f "$rpm" ] || die "rpmbuild did not write $rpm"

echo "deb: $deb"
echo "rpm: $rpm"
