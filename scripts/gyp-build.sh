# Sourced by check-gyp.sh and check-cuda.sh: gyp_build builds binding.gyp with node-gyp in a temporary
# copy (so build/ from cmake-js is untouched) against the libtorch the locator finds, and sets GYP_ADDON
# to the addon it made; the copy is removed when the calling script exits.
gyp_build() {
  gyp_work=$(mktemp -d)
  trap 'rm -rf "$gyp_work"' EXIT
  cp -r package.json binding.gyp native scripts "$gyp_work"/
  ln -s "$PWD/node_modules" "$gyp_work/node_modules"
  local nodedir
  nodedir=$(dirname "$(dirname "$(command -v node)")")
  [ -f "$nodedir/include/node/node_api.h" ] || nodedir=/usr
  (cd "$gyp_work" && npx --no-install node-gyp rebuild --nodedir="$nodedir" -j 2 >"$gyp_work/gyp.log" 2>&1) || { tail -40 "$gyp_work/gyp.log"; exit 1; }
  GYP_ADDON="$gyp_work/build/Release/torchbert.node"
}
