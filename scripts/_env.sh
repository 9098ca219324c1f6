# Shared by the scripts in this folder: create or reuse .venv and install the project
# with the extras named in $PULLPUSH_EXTRAS. Re-installs only when pyproject.toml changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
venv="$root/.venv"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
extras="${PULLPUSH_EXTRAS:-dev}"
stamp="$venv/.pullpush-installed-$extras"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet -e ".[$extras]"
    echo "$want" > "$stamp"
fi
export PATH="$venv/bin:$PATH"
