#!/bin/sh
# Renders an Alertmanager config template (comment lines are copied as written): every ${NAME} is replaced by the environment
# variable NAME (which must be set), every ${NAME:-default} by NAME or the default. Alertmanager
# does not expand the environment itself; this runs before it starts (scripts/stack.sh, the
# Docker stack's entrypoint, the HA test). POSIX sh + awk, so it runs in busybox images too.
#
#   render-config.sh TEMPLATE OUTPUT
set -eu
[ $# -eq 2 ] || { echo "usage: $0 TEMPLATE OUTPUT" >&2; exit 2; }
template=$1 output=$2
tmp="$output.tmp.$$"
if ! awk '
  /^[ \t]*#/ { print; next }  # comments are copied as written
  {
    line = $0; out = ""
    while (match(line, /\$\{[A-Za-z_][A-Za-z_0-9]*(:-[^}]*)?\}/)) {
      ref = substr(line, RSTART + 2, RLENGTH - 3)
      name = ref; fallback = ""; has_default = 0
      i = index(ref, ":-")
      if (i > 0) { name = substr(ref, 1, i - 1); fallback = substr(ref, i + 2); has_default = 1 }
      if (name in ENVIRON && ENVIRON[name] != "") value = ENVIRON[name]
      else if (has_default) value = fallback
      else { printf "%s:%d: set %s (no default)\n", FILENAME, NR, name > "/dev/stderr"; missing = 1; value = "" }
      if (value ~ /\n/) { printf "%s:%d: %s spans lines\n", FILENAME, NR, name > "/dev/stderr"; missing = 1 }
      out = out substr(line, 1, RSTART - 1) value
      line = substr(line, RSTART + RLENGTH)
    }
    print out line
  }
  END { exit missing }
' "$template" >"$tmp"; then
  rm -f "$tmp"
  echo "$0: $template needs the variables above; nothing written to $output" >&2
  exit 1
fi
mv "$tmp" "$output"
