# Shared by the scripts in this folder: create or reuse a virtual environment and install
# the project into it with the extras named in $PULLPUSH_EXTRAS. Re-installs only when
# pyproject.toml changed.
#   PYTHON   the interpreter that creates the environment: a command or path (default
#            python3), or a version such as 3.10, looked up as python3.10 on PATH, then
#            in pyenv ($PYENV_ROOT/versions/3.10.*)
#   VENV     the environment's folder (default .venv; a relative path is taken from the
#            repository root)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
want_version=""
if [[ "$python" =~ ^[0-9]+\.[0-9]+$ ]]; then
    want_version="$python"
    found=""
    if "python$want_version" -c "" >/dev/null 2>&1; then
        found="python$want_version"
    else
        for candidate in $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}/versions/$want_version".* 2>/dev/null \
                | sort -V -r); do
            if [ -x "$candidate/bin/python" ]; then
                found="$candidate/bin/python"
                break
            fi
        done
    fi
    if [ -z "$found" ]; then
        echo "error: no Python $want_version: neither python$want_version on PATH nor" \
            "${PYENV_ROOT:-$HOME/.pyenv}/versions/$want_version.* (pyenv install $want_version)" >&2
        exit 1
    fi
    python="$found"
fi
venv="${VENV:-.venv}"
[[ "$venv" = /* ]] || venv="$root/$venv"
if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
if [ -n "$want_version" ]; then
    have_version="$("$venv/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    if [ "$have_version" != "$want_version" ]; then
        echo "error: $venv has Python $have_version, not $want_version (remove it, or set VENV)" >&2
        exit 1
    fi
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
