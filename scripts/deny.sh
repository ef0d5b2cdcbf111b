#!/usr/bin/env bash
# cargo deny with the committed policy (deny.toml): advisories, licenses, bans, sources.
# Installs cargo-deny from crates.io once into a cache outside the repository. The advisory
# database comes from GitHub; where GitHub is out of reach it is cloned from a local snapshot of
# rustsec/advisory-db (SLA_ADVISORY_DB, or the tool library's mirror) and its age is said; with
# neither, advisories are not checked and this says so (the other checks still run).
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${SLA_TOOLS_CACHE:-/opt/sla-monitor}"
version=0.20.2
deny="$cache/cargo-deny-$version/bin/cargo-deny"
if [ ! -x "$deny" ]; then
  echo "[deny] installing cargo-deny $version into $cache (once, a few minutes)"
  cargo install --quiet --locked --version "$version" --root "$cache/cargo-deny-$version" cargo-deny
fi

checks=(licenses bans sources)
config=deny.toml
offline=()
if timeout 10 git ls-remote https://github.com/rustsec/advisory-db HEAD >/dev/null 2>&1; then
  checks=(advisories "${checks[@]}")
else
  snapshot="${SLA_ADVISORY_DB:-}"
  if [ -z "$snapshot" ]; then
    for candidate in /work/.mirror/rustsec+advisory-db/repo /work/.mirror/rustsec+advisory-db; do
      if git -C "$candidate" rev-parse --verify -q HEAD >/dev/null 2>&1; then snapshot=$candidate; break; fi
    done
  fi
  if [ -n "$snapshot" ]; then
    age=$(( ($(date +%s) - $(git -C "$snapshot" log -1 --format=%ct HEAD)) / 86400 ))
    echo "[deny] GitHub is out of reach: advisories from the local snapshot $snapshot ($age days old)"
    # cargo-deny keeps the default database in <db-path>/advisory-db-<hash of its URL> (the
    # hash of https://github.com/rustsec/advisory-db for this pinned version); the snapshot is
    # put there and cargo-deny runs offline.
    db="$cache/advisory-dbs/advisory-db-3157b0e258782691"
    if [ -d "$db/.git" ]; then
      git -C "$db" fetch --quiet "$snapshot" HEAD && git -C "$db" reset --quiet --hard FETCH_HEAD
    else
      mkdir -p "$(dirname "$db")" && git clone --quiet "$snapshot" "$db"
    fi
    config=$(mktemp --suffix=.toml)
    trap 'rm -f "$config"' EXIT
    sed "s|^\[advisories\]|[advisories]\ndb-path = \"$cache/advisory-dbs\"|" deny.toml >"$config"
    offline=(--offline)
    checks=(advisories "${checks[@]}")
  else
    echo "[deny] GitHub is out of reach and no advisory-db snapshot is present: advisories NOT checked"
  fi
fi
"$deny" --log-level warn "${offline[@]}" --config "$config" check "${checks[@]}"
