#!/usr/bin/env bash
# Build the real plakar from the Go module proxy into an ignored folder.
#   tools/build-plakar.sh VERSION TOOLS_DIR
# `go install github.com/PlakarKorp/plakar@VERSION` cannot be used as is here:
# the proxy refuses the module's version list (needed for the deprecation
# check) and does not serve go.omarpolo.com/ttlmap, which plakar's web UI
# imports. So the module is downloaded from the proxy at VERSION and built
# with that one dependency replaced by tools/ttlmap, our own stand-in.
set -euo pipefail
version=$1
tools=$(cd "$2" 2>/dev/null && pwd || { mkdir -p "$2" && cd "$2" && pwd; })
here=$(cd "$(dirname "$0")" && pwd)
out=$tools/plakar-$version/bin/plakar
src=$tools/plakar-$version/src

dir=$(go mod download -json "github.com/PlakarKorp/plakar@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -n "$dir" ] || { echo "build-plakar: could not download plakar $version" >&2; exit 1; }
rm -rf "$src"
mkdir -p "$(dirname "$src")"
cp -r "$dir" "$src"
chmod -R u+w "$src"
cd "$src"
if grep -q 'go.omarpolo.com/ttlmap' go.mod; then
    go mod edit -replace "go.omarpolo.com/ttlmap=$here/ttlmap"
    sed -i '/go.omarpolo.com\/ttlmap/d' go.sum
fi
go build -o "$out.tmp" .
mv "$out.tmp" "$out"
rm -rf "$src"
echo "built $out"
