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
# docs/EXTENSION.md gives, so the two cannot drift apart, and tries each zip
# under Wine: unzipped, with the sample pyisapie.toml pointed at a small app,
# its isapi-host.exe serves that app through its pyisapie.dll, with Python
# found on PATH in another folder, as IIS finds it.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=ci/windows-lib.sh
. ci/windows-lib.sh
out=$WINDOWS_OUT
dist=target/dist
tmpl=ci/package-windows
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)

[ -f "$out/bin/isapi-host.exe" ] || { echo "package-windows: no $out/bin/isapi-host.exe: run ci/windows.sh first" >&2; exit 2; }

# Every command line INSTALL.txt tells the admin to run must be in the docs
# too (a Python version in the docs stands for @PYDOT@/@PYVER@).
python3 - "$tmpl/INSTALL.txt" docs/EXTENSION.md <<'PY'
import re, sys
install, docs = (open(p, encoding="utf-8").read() for p in sys.argv[1:])
missing = []
for line in re.findall(r"^    ((?:%windir%|icacls |py -|C:\\pyisapie\\isapi-host).*)$", install, re.M):
    pattern = re.escape(line).replace("@PYDOT@", r"3\.\d+").replace("@PYVER@", r"3\d+")
    if not re.search(pattern, docs):
        missing.append(line)
if missing:
    sys.exit("package-windows: INSTALL.txt and docs/EXTENSION.md disagree; the docs lack:\n  "
             + "\n  ".join(missing))
PY

# winpath DIR: the Wine (Z:) path of a Linux path.
winpath() { local p; p=$(realpath -m "$1"); echo "Z:${p//\//\\}"; }

# smoke ZIP PYDIR: the package, unzipped, serves a WSGI app under Wine.
smoke() {
  local zip=$1 pydir=$2 t pid addr body i
  t=$(mktemp -d "$dist/smoke.XXXXXX")
  unzip -q "$zip" -d "$t/pyisapie"
  mkdir -p "$t/site"
  printf '%s\n' 'import sys' 'def app(environ, start_response):' \
    '    start_response("200 OK", [("Content-Type", "text/plain")])' \
    '    return [b"package ok, Python " + sys.version.split()[0].encode()]' > "$t/site/smokeapp.py"
  # The sample configuration as shipped, but for this app, folder and log.
  python3 - "$t/pyisapie/pyisapie.toml" "$(winpath "$t/site")" "$(winpath "$t/pyisapie.log")" <<'PY'
import re, sys
path, site, log = sys.argv[1:]
text = open(path, newline="").read()
for key, value in (("python_path", "['%s']" % site), ("callable", '"smokeapp:app"'), ("log", "'%s'" % log)):
    text, n = re.subn(r"(?m)^%s = .*?(\r?)$" % key, lambda m: "%s = %s%s" % (key, value, m.group(1)), text)
    assert n == 1, key
open(path, "w", newline="").write(text)
PY
  : >"$t/stdout"
  WINEPATH=$(winpath "$pydir") "$WINE64" "$t/pyisapie/isapi-host.exe" serve --bind 127.0.0.1:0 \
    --extension "$(winpath "$t/pyisapie/pyisapie.dll")" >"$t/stdout" 2>"$t/stderr" &
  pid=$!
  addr=
  for i in $(seq 1 120); do
    addr=$(sed -n 's|.*listening on http://\([0-9.:]*\).*|\1|p' "$t/stdout" | head -n 1)
    [ -n "$addr" ] || ! kill -0 "$pid" 2>/dev/null && break
    sleep 0.5
  done
  body=$( [ -n "$addr" ] && curl -sS --max-time 20 "http://$addr/" || true)
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [[ "$body" != "package ok, Python "* ]]; then
    echo "package-windows: $(basename "$zip") did not serve the app (got: ${body:-nothing})" >&2
    cat "$t/stdout" "$t/stderr" "$t/pyisapie.log" 2>/dev/null | tail -n 30 >&2
    return 1
  fi
  echo "package-windows: $(basename "$zip") under Wine: $body"
  rm -rf "$t"
}

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
  "$MINGW_PREFIX-strip" -o "$stage/pyisapie.dll" "$dir/pyisapie.dll"
  "$MINGW_PREFIX-strip" -o "$stage/isapi-host.exe" "$out/bin/isapi-host.exe"
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
  exports=$(windows_dll_exports "$stage/pyisapie.dll" | sort | tr '\n' ' ')
  if [ "$exports" != "GetExtensionVersion HttpExtensionProc TerminateExtension " ]; then
    echo "package-windows: $name/pyisapie.dll exports: $exports" >&2
    exit 1
  fi
  echo "package-windows: $dist/$name.zip ($(du -k "$dist/$name.zip" | cut -f1) KiB)"
  smoke "$dist/$name.zip" "$dir"
  made=$((made + 1))
done
rm -rf "$dist/stage"
[ "$made" -gt 0 ] || { echo "package-windows: no $out/py3*/pyisapie.dll: run ci/windows.sh first" >&2; exit 2; }
