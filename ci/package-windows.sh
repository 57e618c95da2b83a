#!/usr/bin/env bash
# The package an IIS admin installs: one zip per Python version that
# ci/windows.sh built, at target/dist/pyisapie-<version>-win-amd64-py3XX.zip,
# holding
#   pyisapie.dll      the extension, stripped (built for that Python)
#   isapi-host.exe    the host, to try the app without IIS
#   pyisapie.toml     a sample configuration
#   web.config        the IIS handler mapping
#   static\web.config hands a folder of static files back to IIS
#   INSTALL.txt       the steps (docs/EXTENSION.md says the same, at length)
#   LICENSE-*         the licences
#
# Run ci/windows.sh first. Checks that INSTALL.txt's commands are the ones
# docs/EXTENSION.md gives, so the two cannot drift apart.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${WINDOWS_OUT:-target/windows/out}
dist=target/dist
tmpl=ci/package-windows
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

[ -f "$out/bin/isapi-host.exe" ] || { echo "package-windows: no $out/bin/isapi-host.exe: run ci/windows.sh first" >&2; exit 2; }

# Every command line INSTALL.txt tells the admin to run must be in the docs too.
while IFS= read -r line; do
  grep -qF -- "$line" docs/EXTENSION.md || {
    echo "package-windows: INSTALL.txt and docs/EXTENSION.md disagree; the docs lack:" >&2
    echo "  $line" >&2
    exit 1
  }
done < <(sed -n 's/^    \(%windir%.*\|icacls .*\|py -.*\)$/\1/p' "$tmpl/INSTALL.txt")

mkdir -p "$dist"
made=0
for dir in "$out"/py3*/; do
  [ -f "$dir/pyisapie.dll" ] || continue
  py=$(basename "$dir")                # py311
  pyver=${py#py}                       # 311
  pydot="${pyver:0:1}.${pyver:1}"      # 3.11
  name="pyisapie-$version-win-amd64-$py"
  stage="$dist/stage/$name"
  rm -rf "$stage" && mkdir -p "$stage/static"
  x86_64-w64-mingw32-strip -o "$stage/pyisapie.dll" "$dir/pyisapie.dll"
  x86_64-w64-mingw32-strip -o "$stage/isapi-host.exe" "$out/bin/isapi-host.exe"
  for f in INSTALL.txt pyisapie.toml web.config; do
    sed -e "s/@PYVER@/$pyver/g" -e "s/@PYDOT@/$pydot/g" -e "s/@VERSION@/$version/g" \
      "$tmpl/$f" | sed 's/$/\r/' > "$stage/$f"   # CRLF: Notepad-friendly
  done
  sed 's/$/\r/' "$tmpl/static-web.config" > "$stage/static/web.config"
  for f in LICENSE-MIT LICENSE-APACHE; do
    [ -f "$f" ] && cp "$f" "$stage/"
  done
  rm -f "$dist/$name.zip"
  (cd "$stage" && TZ=UTC zip -q -X -r "../../$name.zip" .)
  # The DLL must still export exactly the ISAPI entry points once stripped.
  exports=$(x86_64-w64-mingw32-objdump -p "$stage/pyisapie.dll" \
    | awk '/\[Ordinal\/Name Pointer\] Table/{t=1; next} t && /^\s*\[/{print $NF} t && /^$/{t=0}' | sort | tr '\n' ' ')
  if [ "$exports" != "GetExtensionVersion HttpExtensionProc TerminateExtension " ]; then
    echo "package-windows: $name/pyisapie.dll exports: $exports" >&2
    exit 1
  fi
  echo "package-windows: $dist/$name.zip ($(du -k "$dist/$name.zip" | cut -f1) KiB)"
  made=$((made + 1))
done
rm -rf "$dist/stage"
[ "$made" -gt 0 ] || { echo "package-windows: no $out/py3*/pyisapie.dll: run ci/windows.sh first" >&2; exit 2; }
