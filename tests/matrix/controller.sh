#!/usr/bin/env bash
# Copyright: contributors to the vfio.avic collection
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Build (once; kept between runs) the controller virtualenv of one ansible-core leg of the test
# matrix and print its bin directory.
#
#   bash tests/matrix/controller.sh 2.16     Debian 12's Python 3.11, ansible-core 2.16, ansible 9
#   bash tests/matrix/controller.sh 2.21     Debian 13's Python 3.13, ansible-core 2.21
#
# ansible-core 2.20 and later need Python >= 3.12 on the controller; Debian 12 has 3.11. The 2.21
# leg therefore runs Debian trixie's own python3.13 package: debootstrap unpacks trixie (its
# Python, glibc and libraries) into a directory, and the interpreter is pointed at that directory's
# dynamic loader and libraries (patchelf), so it runs on this machine next to its podman like any
# other program, without a chroot. Nothing of the host's Python is used by that leg.
# Environment: DEBIAN_MIRROR (default http://deb.debian.org/debian), VFIO_AVIC_MATRIX (cache dir,
# default .build/matrix in the checkout).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache=${VFIO_AVIC_MATRIX:-$repo/.build/matrix}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
leg=${1:-}
say() { printf '[matrix %s] %s\n' "$leg" "$*" >&2; }

case $leg in
    2.16) ;;
    2.21) ;;
    *) echo "usage: $0 2.16|2.21" >&2; exit 2 ;;
esac
req="$here/requirements-$leg.txt"
venv="$cache/core-$leg"
stamp="$venv/.installed"

# A venv is rebuilt when its requirements file changed.
if [[ -f $stamp ]] && cmp -s "$stamp" "$req"; then
    echo "$venv/bin"
    exit 0
fi
mkdir -p "$cache"
rm -rf "$venv"

if [[ $leg == 2.16 ]]; then
    python3 -m venv "$venv"
else
    root="$cache/trixie-python"
    if [[ ! -f $root/.ready ]]; then
        [[ $(id -u) -eq 0 ]] || { say "building the trixie Python needs root (debootstrap)"; exit 1; }
        command -v patchelf >/dev/null || apt-get install -y -qq patchelf >/dev/null
        for tool in debootstrap patchelf; do
            command -v "$tool" >/dev/null || { say "missing $tool: run make deps first"; exit 1; }
        done
        rm -rf --one-file-system "$root"
        say "debootstrap trixie (python3, python3-venv) into $root"
        debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
            trixie "$root" "$mirror" >"$cache/debootstrap-trixie.log" 2>&1 ||
            { tail -20 "$cache/debootstrap-trixie.log" >&2; exit 1; }
        py=$(readlink -f "$root/usr/bin/python3")
        libs="$root/lib/x86_64-linux-gnu:$root/usr/lib/x86_64-linux-gnu"
        # DT_RPATH (not RUNPATH): it also applies to the libraries of the extension modules.
        patchelf --set-interpreter "$root/lib64/ld-linux-x86-64.so.2" --force-rpath --set-rpath "$libs" "$py"
        # Debian's ensurepip takes pip's wheel from the build-time WHEEL_PKG_DIR,
        # /usr/share/python-wheels: point it at trixie's, not this machine's.
        sed -i "s|sysconfig.get_config_var('WHEEL_PKG_DIR')|'$root/usr/share/python-wheels'|" \
            "$root"/usr/lib/python3.*/ensurepip/__init__.py
        grep -q "'$root/usr/share/python-wheels'" "$root"/usr/lib/python3.*/ensurepip/__init__.py
        "$root/usr/bin/python3" -c 'import ssl, sqlite3, ctypes, ensurepip, sys; print(sys.version)' >&2
        touch "$root/.ready"
    fi
    "$root/usr/bin/python3" -m venv "$venv"
fi
say "pip install -r $(basename "$req")"
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$req"
cp "$req" "$stamp"
echo "$venv/bin"
