# Sourced by the tools/get-*.sh scripts (not run on its own).
#
#   begin_fetch DEST          makes DEST (with debs/ and licences/) and sets DEST to its absolute path, PY to the
#                             Python to run ($PYTHON, default the repo's .venv) and work to a temporary folder removed
#                             when the script exits. Needs $repo (the repository root).
#   fetch_deb PKG DEST WORK   keeps PKG's .deb in DEST/debs (downloaded once, with apt-get download; an apt-get
#                             update is tried when the first download fails), unpacks it into WORK/PKG (dpkg -x)
#                             and copies its copyright file to DEST/licences/PKG.txt.
fetch_deb() {
  local pkg=$1 dest=$2 work=$3
  mkdir -p "$dest/debs" "$dest/licences"
  if ! ls "$dest"/debs/"${pkg}"_*.deb >/dev/null 2>&1; then
    (cd "$dest/debs" && apt-get download "$pkg" >/dev/null 2>&1) || {
      apt-get update >/dev/null 2>&1 || true
      (cd "$dest/debs" && apt-get download "$pkg" >/dev/null)
    }
  fi
  dpkg -x "$(ls "$dest"/debs/"${pkg}"_*.deb | tail -1)" "$work/$pkg"
  cp "$work/$pkg/usr/share/doc/$pkg/copyright" "$dest/licences/$pkg.txt"
}

begin_fetch() {
  DEST=${1:?begin_fetch: no DEST}
  PY=${PYTHON:-$repo/.venv/bin/python}
  mkdir -p "$DEST"/{debs,licences}
  DEST=$(cd "$DEST" && pwd)
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
}
