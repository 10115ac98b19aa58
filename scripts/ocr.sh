#!/usr/bin/env bash
# OCR of scanned PDF pages and images (ingest/ocr.py) runs Debian's Tesseract with its English
# and Simplified Chinese data. Install them when missing (as root; otherwise the command to run
# is printed and set-up goes on: ingest then names the packages when a scan needs them).
set -euo pipefail
if command -v tesseract >/dev/null 2>&1 \
  && tesseract --list-langs 2>/dev/null | grep -qx chi_sim \
  && tesseract --list-langs 2>/dev/null | grep -qx eng; then
  exit 0
fi
t0=$(date +%s)
bash "$(dirname "$0")/debian_install.sh" ocr "OCR of scans and images" \
  --no-install-recommends tesseract-ocr tesseract-ocr-eng tesseract-ocr-chi-sim
command -v tesseract >/dev/null 2>&1 || exit 0
echo "ocr: ready in $(( $(date +%s) - t0 )) s ($(tesseract --version 2>&1 | head -1))"
