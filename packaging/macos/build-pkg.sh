#!/bin/bash
# Build the patchd agent's macOS installer package on a Mac (Xcode command-line tools).
#
#   packaging/macos/build-pkg.sh --requirements FILE [--arch arm64|x86_64] [--out DIR]
#       (--app-identity ID --installer-identity ID --notary-profile NAME | --unsigned)
#
# What it makes: dist/patchd-VERSION-macos-ARCH.pkg, which installs
#   /opt/patchd/python        python-build-standalone's relocatable CPython (packaging/python-pins)
#                             with patchd and its dependencies in its own site-packages
#   /opt/patchd/bin/patchd    the launcher the launchd plist runs
# and whose scripts stop a running agent safely (preinstall) and run
# `patchd service install --manager launchd` (postinstall): see docs/install.md.
#
# --requirements: patchd's dependencies with their hashes (`pip-compile --generate-hashes`
# on the build Mac, reviewed like code); pip installs nothing without a matching hash and
# only wheels. Signing: every Mach-O file is signed with the Developer ID Application
# identity under the hardened runtime (codesign --options runtime --timestamp), the
# product with the Developer ID Installer identity; then notarised (xcrun notarytool
# submit --wait, with credentials stored by `xcrun notarytool store-credentials NAME`)
# and stapled. --unsigned makes an unsigned package for testing only.
#
# This is a recipe: it cannot run on the Linux machines where patchd is developed, and
# has not been run yet. tests/packaging checks its syntax (bash -n, shellcheck) and its
# agreement with patchd's own definitions.
set -euo pipefail

readonly IDENTIFIER=org.patchd.agent.pkg
readonly PREFIX=/opt/patchd
readonly MAX_DOWNLOAD_BYTES=200000000 # the Python archive is ~20 MB
readonly DOWNLOAD_TIMEOUT_S=600
readonly NOTARY_TIMEOUT=1h

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

die() {
	printf 'build-pkg.sh: %s\n' "$*" >&2
	exit 1
}

usage() {
	sed -n '2,9p' "$0" >&2
	exit 2
}

arch=$(uname -m)
out="$repo/dist"
requirements=""
app_identity=""
installer_identity=""
notary_profile=""
unsigned=0
while [ $# -gt 0 ]; do
	case "$1" in
	--arch) arch=${2:?}; shift 2 ;;
	--out) out=${2:?}; shift 2 ;;
	--requirements) requirements=${2:?}; shift 2 ;;
	--app-identity) app_identity=${2:?}; shift 2 ;;
	--installer-identity) installer_identity=${2:?}; shift 2 ;;
	--notary-profile) notary_profile=${2:?}; shift 2 ;;
	--unsigned) unsigned=1; shift ;;
	*) usage ;;
	esac
done

[ "$(uname -s)" = Darwin ] || die "this builds a macOS package and needs macOS (pkgbuild, codesign)"
case "$arch" in
arm64 | x86_64) ;;
*) die "unknown architecture '$arch': use --arch arm64 or --arch x86_64" ;;
esac
[ -f "$requirements" ] ||
	die "--requirements FILE is required: the dependencies with hashes (pip-compile --generate-hashes)"
if [ "$unsigned" -eq 0 ] && { [ -z "$app_identity" ] || [ -z "$installer_identity" ] || [ -z "$notary_profile" ]; }; then
	die "give --app-identity, --installer-identity and --notary-profile, or --unsigned for a test build"
fi

# The pinned Python: "VERSION URL SHA-256" for this platform.
pin=$(awk -v platform="macos-$arch" '$1 == platform { print $2, $3, $4; exit }' "$repo/packaging/python-pins")
[ -n "$pin" ] || die "no Python pinned for macos-$arch in packaging/python-pins; add its URL and SHA-256 first"
read -r python_version python_url python_sha256 <<<"$pin"

work=$(mktemp -d "${TMPDIR:-/tmp}/patchd-pkg.XXXXXX")
trap 'rm -rf "$work"' EXIT
stage="$work/root"
mkdir -p "$stage$PREFIX/bin" "$out"

echo "== Python $python_version for $arch"
archive="$work/python.tar.gz"
curl --fail --location --silent --show-error --proto '=https' --tlsv1.2 \
	--max-filesize "$MAX_DOWNLOAD_BYTES" --max-time "$DOWNLOAD_TIMEOUT_S" \
	--output "$archive" "$python_url"
actual=$(shasum -a 256 "$archive" | awk '{ print $1 }')
[ "$actual" = "$python_sha256" ] || die "$python_url has SHA-256 $actual, not the pinned $python_sha256"
tar -xzf "$archive" -C "$stage$PREFIX" # the archive's top directory is python/
py="$stage$PREFIX/python/bin/python3"
[ -x "$py" ] || die "the Python archive has no python/bin/python3"
"$py" -I -c 'import sys; assert sys.version.startswith(sys.argv[1] + " "), sys.version' "$python_version"

echo "== patchd and its dependencies"
"$py" -I -m ensurepip --default-pip >/dev/null
python3 -m pip wheel --quiet --no-deps --wheel-dir "$work/wheel" "$repo"
"$py" -I -m pip install --quiet --no-cache-dir --no-input --disable-pip-version-check \
	--only-binary=:all: --require-hashes --requirement "$requirements"
"$py" -I -m pip install --quiet --no-cache-dir --no-input --disable-pip-version-check \
	--no-index --no-deps "$work"/wheel/patchd-*.whl
"$py" -I -m pip uninstall --quiet --yes pip
"$py" -I -m compileall -q -j 0 "$stage$PREFIX/python/lib"
version=$("$py" -I -c 'import patchd, sys; sys.stdout.write(patchd.__version__)')
"$py" -I -m patchd --version >/dev/null
install -m 0755 "$here/patchd.launcher" "$stage$PREFIX/bin/patchd"

if [ "$unsigned" -eq 0 ]; then
	echo "== codesign (hardened runtime): libraries first, then executables"
	find "$stage$PREFIX" -type f -print0 |
		while IFS= read -r -d '' file; do
			if file -b "$file" | grep -q '^Mach-O'; then printf '%s\n' "$file"; fi
		done >"$work/macho"
	while IFS= read -r file; do
		codesign --force --timestamp --options runtime --sign "$app_identity" "$file"
	done < <(grep -v '/bin/' "$work/macho" || true)
	while IFS= read -r file; do
		codesign --force --timestamp --options runtime \
			--entitlements "$here/entitlements.plist" --sign "$app_identity" "$file"
	done < <(grep '/bin/' "$work/macho" || true)
	while IFS= read -r file; do
		codesign --verify --strict "$file"
	done <"$work/macho"
fi

echo "== pkgbuild"
pkgbuild --analyze --root "$stage" "$work/analyzed.plist" >/dev/null
[ "$(plutil -convert json -o - "$work/analyzed.plist")" = "[]" ] ||
	die "the payload has bundles that packaging/macos/component.plist does not list: $(plutil -p "$work/analyzed.plist")"
cp -R "$here/scripts" "$work/scripts"
chmod 0755 "$work/scripts/preinstall" "$work/scripts/postinstall"
component="patchd-component.pkg"
pkgbuild --root "$stage" --identifier "$IDENTIFIER" --version "$version" \
	--install-location / --ownership recommended \
	--component-plist "$here/component.plist" --scripts "$work/scripts" \
	"$work/$component"

echo "== productbuild"
sed -e "s/@VERSION@/$version/g" -e "s/@ARCH@/$arch/g" -e "s/@COMPONENT@/$component/g" \
	"$here/distribution.xml.in" >"$work/distribution.xml"
product="$out/patchd-$version-macos-$arch.pkg"
if [ "$unsigned" -eq 1 ]; then
	productbuild --distribution "$work/distribution.xml" --package-path "$work" "$product"
	echo "unsigned test package: $product"
	exit 0
fi
productbuild --distribution "$work/distribution.xml" --package-path "$work" \
	--sign "$installer_identity" --timestamp "$product"

echo "== notarise and staple"
xcrun notarytool submit "$product" --keychain-profile "$notary_profile" \
	--wait --timeout "$NOTARY_TIMEOUT" --output-format json >"$work/notary.json"
status=$(plutil -extract status raw -o - "$work/notary.json")
[ "$status" = Accepted ] ||
	die "notarisation: $status; see 'xcrun notarytool log $(plutil -extract id raw -o - "$work/notary.json") --keychain-profile $notary_profile'"
xcrun stapler staple "$product"
xcrun stapler validate "$product"
pkgutil --check-signature "$product"
spctl --assess --type install --verbose=2 "$product"
echo "signed, notarised package: $product"
