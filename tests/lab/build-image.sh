#!/usr/bin/env bash
# Build the vfio.avic lab images from Debian packages (no registry needed). Run as root.
#
#   bash tests/lab/build-image.sh [--force] [--libvirt] [SUITE ...]     SUITE: bookworm (default), trixie
#
#   localhost/vfio-avic-SUITE          debootstrap minbase + python3, python3-apt, sudo, systemd,
#                                      systemd-sysv, dbus, procps, kmod; boots /sbin/init
#   localhost/vfio-avic-SUITE-libvirt  (with --libvirt) the base + libvirt, python3-libvirt, qemu,
#                                      built by `podman build` from tests/lab/Containerfile.libvirt
# An image that already exists is kept unless --force is given.
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), VFIO_AVIC_LAB_TMP (scratch dir).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
include=python3,python3-apt,sudo,systemd,systemd-sysv,dbus,procps,kmod
say() { printf '[build-image] %s\n' "$*"; }
usage() { sed -n '2,12s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }

force=0
libvirt=0
suites=()
for arg in "$@"; do
    case $arg in
        --force) force=1 ;;
        --libvirt) libvirt=1 ;;
        -h | --help) usage; exit 0 ;;
        -*) say "unknown option: $arg" >&2; usage >&2; exit 2 ;;
        *) suites+=("$arg") ;;
    esac
done
((${#suites[@]})) || suites=(bookworm)

if [[ $(id -u) -ne 0 ]]; then
    say "must run as root (debootstrap and root podman)" >&2
    exit 1
fi
for tool in debootstrap podman tar; do
    command -v "$tool" >/dev/null || { say "missing $tool: run tests/lab/setup-host.sh first" >&2; exit 1; }
done

image_exists() { podman image exists "$1"; }

elapsed() {  # elapsed <start seconds> -> "1m 05s"
    local s=$(($(date +%s) - $1))
    printf '%dm %02ds' $((s / 60)) $((s % 60))
}

workdir=""
cleanup() {
    if [[ -n $workdir && -d $workdir ]]; then
        # debootstrap may leave /proc and /sys mounted inside the target on failure
        for m in proc sys dev/pts dev; do
            if mountpoint -q "$workdir/rootfs/$m" 2>/dev/null; then umount -l "$workdir/rootfs/$m" || true; fi
        done
        rm -rf --one-file-system "$workdir"
    fi
    workdir=""
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT TERM

build_base() {  # build_base <suite>
    local suite=$1 name="localhost/vfio-avic-$1" start
    if image_exists "$name" && ((!force)); then
        say "$name exists (use --force to rebuild)"
        return 0
    fi
    start=$(date +%s)
    workdir=$(mktemp -d "${VFIO_AVIC_LAB_TMP:-/var/tmp}/vfio-avic-$suite.XXXXXX")
    local root=$workdir/rootfs
    say "$name: debootstrap --variant=minbase $suite from $mirror into $root"
    debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror"

    say "$name: trimming the root file system"
    # every container gets its own machine id at boot
    : >"$root/etc/machine-id"
    rm -f "$root/var/lib/dbus/machine-id"
    # hostname and resolv.conf come from podman
    rm -f "$root/etc/hostname"
    printf 'LANG=C.UTF-8\n' >"$root/etc/default/locale"
    # units that have nothing to do in a container (and only fail or wait there)
    local unit
    for unit in systemd-udevd.service systemd-udevd-control.socket systemd-udevd-kernel.socket \
        systemd-modules-load.service systemd-remount-fs.service sys-kernel-config.mount \
        sys-kernel-debug.mount sys-kernel-tracing.mount getty.target console-getty.service \
        systemd-firstboot.service systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer; do
        ln -sfn /dev/null "$root/etc/systemd/system/$unit"
    done
    # keep images small: no package cache, no lists (Containerfiles run apt-get update)
    rm -rf "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/var/lib/apt/lists/* "$root"/var/log/*.log "$root"/tmp/* "$root"/var/tmp/*
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' \
        >"$root/etc/apt/apt.conf.d/90vfio-avic-lab"

    say "$name: importing into podman"
    if image_exists "$name"; then podman rmi -f "$name" >/dev/null; fi
    tar --numeric-owner --xattrs -C "$root" -c . |
        podman import \
            --change 'CMD ["/sbin/init"]' \
            --change 'STOPSIGNAL SIGRTMIN+3' \
            --change 'ENV container=podman' \
            --change "LABEL org.opencontainers.image.title=vfio-avic-$suite" \
            --change "LABEL org.opencontainers.image.description=vfio.avic test lab, Debian $suite minbase + systemd" \
            - "$name" >/dev/null
    cleanup
    say "$name: built in $(elapsed "$start"), size $(podman image inspect --format '{{.Size}}' "$name" | numfmt --to=iec)"
}

build_libvirt() {  # build_libvirt <suite>
    local suite=$1 base="localhost/vfio-avic-$1" name="localhost/vfio-avic-$1-libvirt" start
    if image_exists "$name" && ((!force)); then
        say "$name exists (use --force to rebuild)"
        return 0
    fi
    start=$(date +%s)
    say "$name: podman build FROM $base"
    podman build --pull=never --layers=false --build-arg "BASE=$base" \
        -f "$here/Containerfile.libvirt" -t "$name" "$here"
    say "$name: built in $(elapsed "$start"), size $(podman image inspect --format '{{.Size}}' "$name" | numfmt --to=iec)"
}

total=$(date +%s)
for suite in "${suites[@]}"; do
    build_base "$suite"
    if ((libvirt)); then build_libvirt "$suite"; fi
done
say "all requested images ready in $(elapsed "$total"):"
podman images --filter 'reference=localhost/vfio-avic-*' --format '  {{.Repository}}:{{.Tag}}  {{.Size}}'
