# tests/ecosystem/common.sh — sourced by the ecosystem tests. Arguments of every test:
# BUILD_DIR SOURCE_DIR. Gives: $build $src $tmp (removed at exit), fail, ok, png_check.
set -euo pipefail
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/rbm-eco.XXXXXX")
trap 'rm -rf -- "$tmp"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
skip() { echo "SKIPPED: $*" >&2; exit 77; }

# png_check FILE [WIDTH HEIGHT]: a real PNG (signature, IHDR) of that size, not tiny.
png_check() {
  local f=$1 want_w=${2:-} want_h=${3:-}
  [[ -s $f ]] || fail "$f: missing or empty"
  local sig w h
  sig=$(od -An -tx1 -N8 "$f" | tr -d ' \n')
  [[ $sig == 89504e470d0a1a0a ]] || fail "$f: not a PNG (signature $sig)"
  [[ $(od -An -c -j12 -N4 "$f" | tr -d ' \n') == IHDR ]] || fail "$f: no IHDR chunk first"
  w=$(od -An -tu1 -j16 -N4 "$f" | awk '{print $1*16777216+$2*65536+$3*256+$4}')
  h=$(od -An -tu1 -j20 -N4 "$f" | awk '{print $1*16777216+$2*65536+$3*256+$4}')
  ((w > 0 && h > 0)) || fail "$f: empty image ${w}x${h}"
  if [[ -n $want_w ]]; then
    [[ $w == "$want_w" && $h == "$want_h" ]] || fail "$f: ${w}x${h}, expected ${want_w}x${want_h}"
  fi
  echo "${w}x${h} $(stat -c %s "$f")"
}
