#!/usr/bin/env bash
# Run `ansible-test sanity` on a copy of this checkout placed where ansible-test
# wants a collection: <dir>/ansible_collections/vfio/avic.
# Usage: tests/sanity/run.sh [extra ansible-test arguments]
# Environment: SANITY_PYTHON (default: python3's version), SANITY_DIR (default: .build/sanity; each
# leg of the version matrix has its own, so legs and a plain `make sanity` do not share a copy).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
dest="${SANITY_DIR:-$repo/.build/sanity}/ansible_collections/vfio/avic"
python_version=${SANITY_PYTHON:-$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')}
# ansible-test bootstraps pip in its sanity venvs with a script it downloads once
# and caches; offline, provide the cache entry (ensurepip + pip install).
pip_version=$(python3 - <<'PY'
import inspect, re
import ansible_test._internal.python_requirements as r
m = re.search(r"pip='([0-9.]+)'", inspect.getsource(r.get_venv_packages))
print(m.group(1) if m else '24.2')
PY
)
cache="$HOME/.ansible/test/cache"
mkdir -p "$cache"
for v in $pip_version; do
  [ -e "$cache/get_pip_${v//./_}.py" ] || cp "$repo/tests/sanity/pip_bootstrap.py" "$cache/get_pip_${v//./_}.py"
done
rm -rf "$dest"
mkdir -p "$dest"
cd "$repo"
# Tracked files and new files git does not ignore, as they are in the work tree.
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | rsync -a --from0 --files-from=- ./ "$dest/"
cd "$dest"
# ansible-test lists files with git; give the copy its own index so the
# checkout's .gitignore (which hides .build/) does not hide the copy.
git init -q . && git add -A
echo "ansible-test sanity on a copy of the checkout (Python $python_version)"
exec ansible-test sanity --requirements --python "$python_version" --color no "$@"
