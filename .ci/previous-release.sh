#!/usr/bin/env bash
# Builds the previous release's minitter-server (debug) for the rolling-upgrade and canary
# checks of bench/cluster.py, and prints the path of the binary.
#
# The release is the commit in deploy/previous-release (bumped to the commit of each
# release, deploy/README.md). It is checked out as a `git worktree` at a fixed path outside
# the clone and built with the same CARGO_TARGET_DIR as .ci/run: registry crates are
# shared, the workspace crates get artifacts of their own (their path differs). The
# worktree's binary target is renamed (minitter-server-previous-release), so that cargo
# does not overwrite $CARGO_TARGET_DIR/debug/minitter-server, the current build, which
# later steps run. The binary is copied to $CARGO_TARGET_DIR/previous-release/ and the
# build is skipped when it is there already for that commit.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/minitter-target}"
export CARGO_TERM_COLOR=never
COMMIT="$(tr -d '[:space:]' < deploy/previous-release)"
if ! [[ "$COMMIT" =~ ^[0-9a-f]{40}$ ]]; then
  echo "deploy/previous-release must hold a full commit hash, not '$COMMIT'" >&2
  exit 1
fi
OUT="$CARGO_TARGET_DIR/previous-release"
BIN="$OUT/minitter-server"
SRC="${MINITTER_PREVIOUS_RELEASE_SRC:-$HOME/.cache/minitter-previous-release-src}"
mkdir -p "$OUT"
# One build at a time (two clones may share the target dir and the worktree path).
exec 9>"$OUT/.lock"
flock 9

if [ -x "$BIN" ] && [ "$(cat "$OUT/commit" 2>/dev/null)" = "$COMMIT" ]; then
  echo "previous release ${COMMIT:0:7}: already built" >&2
  echo "$BIN"
  exit 0
fi

# A shallow clone (CI's checkout) may lack the commit: fetch just that one.
if ! git cat-file -e "$COMMIT^{commit}" 2>/dev/null; then
  git fetch --quiet --depth=1 origin "$COMMIT" >&2
fi

# A worktree left behind by an interrupted run (of this clone or another) is replaced.
git worktree remove --force "$SRC" >/dev/null 2>&1 || true
rm -rf "$SRC"
git worktree prune
git worktree add --quiet --detach "$SRC" "$COMMIT" >&2
trap 'git worktree remove --force "$SRC" >/dev/null 2>&1 || rm -rf "$SRC"; git worktree prune' EXIT

# The renamed binary target: same sources, another output name.
sed -i '/^\[package\]/a autobins = false' "$SRC/server/Cargo.toml"
printf '\n[[bin]]\nname = "minitter-server-previous-release"\npath = "src/main.rs"\n' >> "$SRC/server/Cargo.toml"

echo "building previous release ${COMMIT:0:7} in $SRC (waits while another cargo build holds the target dir)" >&2
(cd "$SRC" && cargo build --locked -p minitter-server --bin minitter-server-previous-release >&2)
cp "$CARGO_TARGET_DIR/debug/minitter-server-previous-release" "$BIN.tmp"
mv "$BIN.tmp" "$BIN"
echo "$COMMIT" > "$OUT/commit"
echo "$BIN"
