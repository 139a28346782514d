#!/usr/bin/env bash
# Prepare a Debian 12 machine as the vfio.avic container test lab (run as root).
#
#   sudo bash tests/lab/setup-host.sh [build-image.sh options]   e.g. --libvirt, trixie
#
# 1. installs the lab's system packages (podman, runc, debootstrap, libvirt, qemu, ...; shellcheck
#    for ansible-test sanity)
# 2. writes /etc/containers/containers.conf: runc as OCI runtime (crun fails on hybrid cgroup
#    hosts) and default ulimits no higher than this machine's hard limits (podman's defaults
#    exceed them on many CI machines and every container start fails)
# 3. builds the lab images with build-image.sh (skipped when they exist)
# Safe to run again: every step checks before it changes anything.
# Environment: VFIO_AVIC_LAB_SKIP_APT=1 skips step 1, VFIO_AVIC_LAB_SKIP_IMAGES=1 skips step 3.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
say() { printf '[setup-host] %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
    say "must run as root (try: sudo make deps)" >&2
    exit 1
fi
if [[ ! -r /etc/debian_version ]]; then
    say "this script expects Debian 12 (bookworm) or later" >&2
    exit 1
fi

packages=(
    podman runc conmon catatonit containernetworking-plugins netavark aardvark-dns
    debootstrap debian-archive-keyring uidmap slirp4netns fuse-overlayfs
    libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-utils
    python3 python3-venv make git rsync shellcheck openssh-client e2fsprogs
)

# --- 1. packages ---------------------------------------------------------------------------
if [[ ${VFIO_AVIC_LAB_SKIP_APT:-0} != 1 ]]; then
    missing=()
    for p in "${packages[@]}"; do
        if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
            missing+=("$p")
        fi
    done
    if ((${#missing[@]})); then
        say "installing: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update
        apt-get install -y "${missing[@]}"
    else
        say "packages: all ${#packages[@]} already installed"
    fi
fi

# --- 2. containers.conf --------------------------------------------------------------------
conf=/etc/containers/containers.conf
marker="# vfio.avic test lab"

min() { if (($1 < $2)); then echo "$1"; else echo "$2"; fi; }
hard_limit() {  # hard_limit <ulimit option> <value when unlimited>
    local v
    v=$(ulimit -H "$1")
    if [[ $v == unlimited ]]; then v=$2; fi
    printf '%s' "$v"
}
# podman runs its containers with at most pid_max processes: a higher nproc, even one below
# `ulimit -Hu`, makes every container start fail with "error setting rlimit type 6".
nofile=$(min "$(hard_limit -n 1048576)" "$(cat /proc/sys/fs/nr_open)")
nproc=$(min "$(hard_limit -u 4194304)" "$(cat /proc/sys/kernel/pid_max)")

has_our_settings() {
    [[ -f $conf ]] || return 1
    if grep -qF "$marker" "$conf"; then
        # ours: current only when it still carries this machine's limits
        grep -qF "\"nofile=$nofile:$nofile\"" "$conf" && grep -qF "\"nproc=$nproc:$nproc\"" "$conf" &&
            grep -Eq '^[[:space:]]*runtime[[:space:]]*=[[:space:]]*"runc"' "$conf"
    else
        # someone else's: keep it when it already does what the lab needs
        grep -Eq '^[[:space:]]*runtime[[:space:]]*=[[:space:]]*"runc"' "$conf" &&
            grep -Eq '^[[:space:]]*default_ulimits[[:space:]]*=' "$conf"
    fi
}

if has_our_settings; then
    say "$conf already sets runtime = \"runc\" and default_ulimits: left unchanged"
else
    mkdir -p "$(dirname "$conf")"
    if [[ -e $conf ]] && ! grep -qF "$marker" "$conf"; then
        backup="$conf.bak.$(date +%Y%m%d%H%M%S)"
        cp -a "$conf" "$backup"
        say "backed up the existing $conf to $backup (merge its other settings back by hand if needed)"
    fi
    say "writing $conf (runtime runc, ulimits nofile=$nofile nproc=$nproc)"
    cat >"$conf" <<EOF
$marker, written by tests/lab/setup-host.sh.
# podman's default rlimits exceed this machine's hard limits, and crun fails on hybrid
# cgroup hosts: cap the limits (ulimit -H, nr_open, pid_max seen at set-up) and use runc.
[containers]
default_ulimits = [
  "nofile=$nofile:$nofile",
  "nproc=$nproc:$nproc",
]

[engine]
runtime = "runc"
EOF
fi

runtime=$(podman info --format '{{.Host.OCIRuntime.Name}}' 2>/dev/null || true)
say "podman $(podman version --format '{{.Client.Version}}' 2>/dev/null || echo '?') uses OCI runtime: ${runtime:-?}"

# --- 3. images -----------------------------------------------------------------------------
if [[ ${VFIO_AVIC_LAB_SKIP_IMAGES:-0} != 1 ]]; then
    say "building the lab images: build-image.sh $*"
    bash "$here/build-image.sh" "$@"
    say "smoke test: a container from localhost/vfio-avic-bookworm starts with these settings"
    if podman image exists localhost/vfio-avic-bookworm; then
        podman run --rm --network none localhost/vfio-avic-bookworm /bin/true
        say "smoke test passed"
    fi
fi
say "done"
