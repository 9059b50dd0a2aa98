#!/usr/bin/env bash
# The installed wheel works on its own: build it, install it (not editable) into a fresh virtualenv, then run the
# toy pipeline (generate -> diversity -> report) from an empty directory and check that everything it wrote lies
# under the run directory or the user cache (HOME is a scratch folder here), and nothing in site-packages or the
# working directory changed. CI runs it; locally: `make check-wheel`.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# A fresh virtualenv with torch's build takes about 6 GB; say so at once rather than fail in pip's install.
need_kb=$((7 * 1024 * 1024))
free_kb=$(df -Pk "$work" | awk 'NR == 2 {print $4}')
if [ "$free_kb" -lt "$need_kb" ]; then
  echo "check-wheel: $((free_kb / 1024 / 1024)) GB free under $work; a fresh virtualenv with torch needs about 7 GB" \
    "(set TMPDIR to a folder with more room)"
  exit 1
fi

"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --upgrade pip
"$work/venv/bin/python" -m pip wheel --quiet --no-deps -w "$work/dist" "$repo"
"$work/venv/bin/python" -m pip install --quiet "$work/dist"/diversity_cli-*.whl
cli="$work/venv/bin/diversity-cli"
site=$("$work/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

mkdir "$work/empty" "$work/home"
listing() { (cd "$1" && find . -newer "$work/stamp" -print | sort); }
touch "$work/stamp"
sleep 1
RUN="$work/run"
cd "$work/empty"
export HOME="$work/home" HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1
unset DIVERSITY_CLI_CACHE DIVERSITY_CLI_CONF XDG_CACHE_HOME
"$cli" --version
"$cli" generate n=2 out="$RUN"
"$cli" diversity out="$RUN" metric=toy_features
"$cli" report out="$RUN" tables_dir="$RUN/tables"

fail=0
for expected in samples.csv diversity.csv tables/tables.md report.html; do
  if [ ! -s "$RUN/$expected" ]; then echo "check-wheel: $RUN/$expected is missing"; fail=1; fi
done
if [ -n "$(ls -A "$work/empty")" ]; then
  echo "check-wheel: files written into the working directory:"; ls -A "$work/empty"; fail=1
fi
changed=$(listing "$site" | grep -v '/__pycache__' | grep -v '^\.$' || true)
if [ -n "$changed" ]; then echo "check-wheel: site-packages changed:"; echo "$changed" | head -20; fail=1; fi
# Only the user cache (~/.cache) and matplotlib's font cache (~/.config/matplotlib) may appear in HOME.
strays=$(listing "$work/home" | grep -v -E '^\.$|^\./\.cache(/|$)|^\./\.config$|^\./\.config/matplotlib(/|$)' || true)
if [ -n "$strays" ]; then echo "check-wheel: written outside the run and the cache:"; echo "$strays" | head -20; fail=1; fi
[ "$fail" = 0 ] || exit 1
echo "check-wheel: the installed wheel ran generate, diversity and report from an empty directory: $(find "$RUN" -type f | wc -l)"
echo "check-wheel: files in the run directory, $(find "$work/home" -type f | wc -l) in the user cache, nothing anywhere else"
