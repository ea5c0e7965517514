#!/usr/bin/env bash
# Packaging smoke test: build the one-folder bundle, then start it offscreen.
#
#   bash packaging/smoke.sh               # build + check (about 1.5 min of build on 2 cores)
#   bash packaging/smoke.sh --no-build    # check an existing build/dist/fbupscale
#
# Checks, against the bundle only (a clean environment, another working folder, no .venv):
#   1. fbupscale-gui --smoke-test: the window is shown and built (QT_QPA_PLATFORM=offscreen),
#      resources and the model weights are found inside the bundle, faithful and Real-ESRGAN
#      run on a shipped sample, each result is saved with its metadata and read back; exit 0;
#   2. the same on the xcb platform plugin under Xvfb, when xvfb-run is installed;
#   3. the fbupscale command line: --version, and a Lanczos upscale of a sample.
# Prints the bundle size and the times. `.ci/run` runs it after `make test`.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIST="$ROOT/build/dist"
APP="$DIST/fbupscale"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
BUILD=1
[[ "${1:-}" == "--no-build" ]] && BUILD=0

secs() { local ms=$(( ($2 - $1) / 1000000 )); printf '%d.%d' $((ms / 1000)) $((ms % 1000 / 100)); }

cd "$ROOT"
if [[ $BUILD == 1 ]]; then
  t0=$(date +%s%N)
  "$PY" -m PyInstaller packaging/fbupscale.spec --noconfirm --log-level WARN \
    --distpath "$DIST" --workpath "$ROOT/build/pyinstaller"
  t1=$(date +%s%N)
  echo "smoke.sh: build $(secs "$t0" "$t1") s"
fi
[[ -x "$APP/fbupscale-gui" && -x "$APP/fbupscale" ]] || { echo "smoke.sh: no bundle at $APP" >&2; exit 1; }
echo "smoke.sh: bundle $(du -sh "$APP" | cut -f1) ($(du -sb "$APP" | cut -f1) bytes), $(find "$APP" -type f | wc -l) files"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# A clean environment: no venv, no PYTHONPATH, a throw-away home for settings and caches.
run_clean() {
  env -i PATH=/usr/bin:/bin HOME="$WORK/home" XDG_CONFIG_HOME="$WORK/home/.config" \
    XDG_CACHE_HOME="$WORK/home/.cache" XDG_RUNTIME_DIR="$WORK/run" LANG=C.UTF-8 \
    FBUPSCALE_LOG=WARNING "$@"
}
mkdir -p "$WORK/home" "$WORK/run" && chmod 700 "$WORK/run"
cd "$WORK"

t0=$(date +%s%N)
run_clean QT_QPA_PLATFORM=offscreen "$APP/fbupscale-gui" --smoke-test "$WORK/out-offscreen"
t1=$(date +%s%N)
echo "smoke.sh: offscreen smoke test $(secs "$t0" "$t1") s"

if command -v xvfb-run >/dev/null; then
  t0=$(date +%s%N)
  run_clean QT_QPA_PLATFORM=xcb /usr/bin/xvfb-run -a "$APP/fbupscale-gui" --smoke-test "$WORK/out-xcb"
  t1=$(date +%s%N)
  echo "smoke.sh: xcb (Xvfb) smoke test $(secs "$t0" "$t1") s"
else
  echo "smoke.sh: xvfb-run not installed; xcb check skipped"
fi

run_clean "$APP/fbupscale" --version
sample="$(ls "$APP"/_internal/resources/samples/*.png | head -n1)"
out="$(run_clean "$APP/fbupscale" upscale "$sample" -o "$WORK/cli" --engine lanczos --size 256 -q)"
[[ -s "$out" ]] || { echo "smoke.sh: the CLI wrote nothing" >&2; exit 1; }
echo "smoke.sh: CLI wrote $out"
echo "smoke.sh: OK"
