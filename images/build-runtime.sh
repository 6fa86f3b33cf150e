#!/usr/bin/env bash
# Builds the base of iotsub's images without pulling anything from a registry: a root filesystem
# assembled from Debian packages (the way distroless images are made), imported as a local image.
#
#   images/build-runtime.sh [ENGINE]      # ENGINE: podman (default) or docker
#
# What is in it: glibc (libc6) and libgcc_s (libgcc-s1) for the Rust binaries, the Mozilla CA bundle
# (ca-certificates) at /etc/ssl/certs/ca-certificates.crt, /etc/os-release, /etc/passwd and
# /etc/group with root, nobody and nonroot (65532), /etc/nsswitch.conf, /tmp (1777) and
# /home/nonroot (65532, 0700). No shell, no package manager, no coreutils. The packages' control files
# are in /var/lib/dpkg/status.d/ and their copyright files in /usr/share/doc/, so image scanners and
# licence checks see what is inside.
#
# The packages are the ones apt would install on this Debian 12 host (`apt-get download`; an
# `apt-get update` beforehand picks up security updates); their versions are recorded in the image's
# label `dev.iotsub.runtime.packages` and in target/images/runtime/packages.txt.
#
# Output: the image `iotsub-runtime:debian12` (podman names it localhost/iotsub-runtime:debian12)
# and target/images/runtime/rootfs.tar. Rebuilt only when this script is newer than the tarball or the
# image is missing; FORCE=1 rebuilds.
set -euo pipefail
cd "$(dirname "$0")/.."

engine=${1:-podman}
image=${RUNTIME_IMAGE:-iotsub-runtime:debian12}
out=target/images/runtime
packages=(libc6 libgcc-s1 ca-certificates base-files)

fail() {
  echo "build-runtime: $*" >&2
  exit 1
}

if [[ ${FORCE:-0} != 1 && -f $out/rootfs.tar && $out/rootfs.tar -nt "$0" ]] && "$engine" image inspect "$image" >/dev/null 2>&1; then
  echo "build-runtime: $image is up to date ($out/rootfs.tar)" >&2
  exit 0
fi

command -v apt-get >/dev/null && command -v dpkg-deb >/dev/null ||
  fail "needs apt-get and dpkg-deb (a Debian 12 host, the same glibc the binaries are linked against)"
[[ $(. /etc/os-release && echo "${ID:-}-${VERSION_ID:-}") == debian-12 ]] ||
  echo "build-runtime: warning: not Debian 12; the runtime's glibc must be at least the one the binaries were built with" >&2

rm -rf "$out"
mkdir -p "$out/debs" "$out/rootfs" "$out/base-files"
out=$(realpath "$out")
rootfs=$out/rootfs

# apt drops to the _apt user to download; it needs a directory that user can write.
chmod 0777 "$out/debs"
(cd "$out/debs" && apt-get download -q "${packages[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' >&2 || true)
for package in "${packages[@]}"; do
  compgen -G "$out/debs/${package}_*.deb" >/dev/null || fail "apt-get download $package gave no .deb (apt-get update first?)"
done

# Unpacked, not installed: no maintainer scripts run (what they would do is done below by hand).
mkdir -p "$rootfs/var/lib/dpkg/status.d"
: >"$out/packages.txt"
for deb in "$out"/debs/*.deb; do
  name=$(dpkg-deb -f "$deb" Package)
  version=$(dpkg-deb -f "$deb" Version)
  echo "$name=$version" >>"$out/packages.txt"
  if [[ $name == base-files ]]; then
    # Only its os-release: the rest (profile, motd, the FHS skeleton) is for systems with a shell.
    dpkg-deb -x "$deb" "$out/base-files"
    mkdir -p "$rootfs/usr/lib" "$rootfs/etc" "$rootfs/usr/share/doc/base-files"
    cp "$out/base-files/usr/lib/os-release" "$rootfs/usr/lib/os-release"
    ln -s ../usr/lib/os-release "$rootfs/etc/os-release"
    cp "$out/base-files/usr/share/doc/base-files/copyright" "$rootfs/usr/share/doc/base-files/copyright"
  else
    dpkg-deb -x "$deb" "$rootfs"
  fi
  dpkg-deb -f "$deb" >"$rootfs/var/lib/dpkg/status.d/$name"
done

# The CA bundle update-ca-certificates would write: every certificate the package ships (all of them
# are enabled by default), in name order.
mkdir -p "$rootfs/etc/ssl/certs"
find "$rootfs/usr/share/ca-certificates" -name '*.crt' | LC_ALL=C sort | xargs cat >"$rootfs/etc/ssl/certs/ca-certificates.crt"
[[ -s $rootfs/etc/ssl/certs/ca-certificates.crt ]] || fail "no certificates in the ca-certificates package"

# Not needed by a Rust binary: iconv modules (8 MB), glibc's debugging and profiling preloads,
# changelogs and manual pages (copyright files stay), the CA tooling that needs a shell.
rm -rf "$rootfs/usr/lib/x86_64-linux-gnu/gconv" \
  "$rootfs"/lib/x86_64-linux-gnu/{libc_malloc_debug.so.0,libmemusage.so,libpcprofile.so} \
  "$rootfs/usr/share/lintian" "$rootfs/usr/share/man" "$rootfs/usr/sbin" "$rootfs/etc/ca-certificates" \
  "$rootfs/etc/ld.so.conf.d"
find "$rootfs/usr/share/doc" -type f ! -name copyright -delete
find "$rootfs/usr/share/doc" -type l -delete

cat >"$rootfs/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat >"$rootfs/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
# /etc/hosts first (Kubernetes writes it), then DNS; glibc 2.36 has both built in.
echo "hosts: files dns" >"$rootfs/etc/nsswitch.conf"
mkdir -p "$rootfs/tmp" "$rootfs/root" "$rootfs/home/nonroot"
chmod 1777 "$rootfs/tmp"
chmod 0700 "$rootfs/root" "$rootfs/home/nonroot"

# Owners are set in the archive, not on disk, so this works without root: everything root's, but
# /home/nonroot. Fixed times and order make the same packages give the same tarball.
tar_opts=(--numeric-owner --sort=name --mtime=@0 --format=gnu -C "$rootfs")
tar "${tar_opts[@]}" --owner=0 --group=0 --exclude=./home/nonroot -cf "$out/rootfs.tar" .
tar "${tar_opts[@]}" --owner=65532 --group=65532 -rf "$out/rootfs.tar" ./home/nonroot

mkdir -p "$out/context"
mv "$out/rootfs.tar" "$out/context/rootfs.tar"
printf 'FROM scratch\nADD rootfs.tar /\n' >"$out/context/Containerfile"
pull=()
[[ $engine == podman ]] && pull=(--pull=never)
"$engine" build -q "${pull[@]}" -t "$image" \
  --label "org.opencontainers.image.title=iotsub-runtime" \
  --label "org.opencontainers.image.description=glibc, libgcc_s and CA certificates from Debian 12; no shell" \
  --label "dev.iotsub.runtime.packages=$(paste -sd, "$out/packages.txt")" \
  "$out/context" >/dev/null
ln -f "$out/context/rootfs.tar" "$out/rootfs.tar"
rm -rf "$out/debs" "$out/base-files" "$rootfs"
echo "build-runtime: $image from $(paste -sd' ' "$out/packages.txt"), $(du -h "$out/rootfs.tar" | cut -f1) uncompressed" >&2
