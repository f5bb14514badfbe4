#!/usr/bin/env bash
# Install every speech synthesis engine the training recipe and the tests use (Debian/Ubuntu, as root).
#
# Pico (libttspico-utils), RHVoice and the mbrola voices live in Debian's contrib and non-free
# components (Ubuntu: multiverse), which stock images do not enable. This script adds them to the
# apt sources (deb822 *.sources files and one-line sources.list files alike), runs apt-get update and
# installs the engines. Idempotent: when everything is installed already it only checks and exits,
# without touching the sources or the network.
#
# Usage: training/tts/install-engines.sh
#        APT_SOURCES_DIR=DIR training/tts/install-engines.sh   (only edit the sources under DIR; no apt)
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

PACKAGES=(
  espeak-ng flite
  libttspico-utils
  rhvoice rhvoice-english
  mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1
  mbrola-de1 mbrola-de2 mbrola-de3 mbrola-de4 mbrola-de5 mbrola-de6 mbrola-de7
  mbrola-fr1 mbrola-fr2 mbrola-fr3 mbrola-fr4 mbrola-fr5 mbrola-fr6 mbrola-fr7
)

# deb822 (*.sources): in every stanza whose URIs are Debian's (or Ubuntu's), add the missing components.
enable_deb822() {
  local file="$1" tmp
  tmp="$(mktemp)"
  awk '
    function flush(   i, n, parts, have, extra, line) {
      for (i = 1; i <= count; i++) {
        line = stanza[i]
        if (wanted != "" && line ~ /^Components:/) {
          n = split(substr(line, 12), parts, /[ \t]+/)
          delete have
          for (j = 1; j <= n; j++) if (parts[j] != "") have[parts[j]] = 1
          extra = ""
          m = split(wanted, want, " ")
          for (j = 1; j <= m; j++) if (!(want[j] in have)) extra = extra " " want[j]
          line = line extra
        }
        print line
      }
      count = 0; wanted = ""
    }
    /^[ \t]*$/ { flush(); print; next }
    {
      stanza[++count] = $0
      if ($0 ~ /^URIs:/ && $0 ~ /debian/) wanted = "contrib non-free"
      if ($0 ~ /^URIs:/ && $0 ~ /ubuntu/) wanted = "universe multiverse"
    }
    END { flush() }
  ' "$file" >"$tmp"
  if ! cmp -s "$file" "$tmp"; then cat "$tmp" >"$file"; fi
  rm -f "$tmp"
}

# One-line format (sources.list, *.list): "deb [opts] URI suite comp..." lines for Debian/Ubuntu.
enable_one_line() {
  local file="$1" tmp
  tmp="$(mktemp)"
  awk '
    /^[ \t]*deb(-src)?[ \t]/ && ($0 ~ /debian/ || $0 ~ /ubuntu/) {
      wanted = ($0 ~ /ubuntu/) ? "universe multiverse" : "contrib non-free"
      n = split(wanted, want, " ")
      line = $0
      for (j = 1; j <= n; j++) if (line !~ ("[ \t]" want[j] "([ \t]|$)")) line = line " " want[j]
      print line; next
    }
    { print }
  ' "$file" >"$tmp"
  if ! cmp -s "$file" "$tmp"; then cat "$tmp" >"$file"; fi
  rm -f "$tmp"
}

enable_components() {
  local dir="$1" file
  shopt -s nullglob
  for file in "$dir"/sources.list.d/*.sources; do enable_deb822 "$file"; done
  for file in "$dir"/sources.list "$dir"/sources.list.d/*.list; do
    if [ -f "$file" ]; then enable_one_line "$file"; fi
  done
}

if [ -n "${APT_SOURCES_DIR:-}" ]; then
  enable_components "$APT_SOURCES_DIR"  # a dry run on a copy of the sources (the tests): no apt
  exit 0
fi

missing=()
for package in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

enable_components /etc/apt
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
