//! Captures the git revision the server is built from, for the `x-minitter-version` header
//! (`src/http/version.rs`): `MINITTER_BUILD_REVISION` is set for the compiler to
//!
//! 1. `MINITTER_GIT_REVISION` from the build's environment, when set: for builds from a
//!    copy without `.git` (the Docker build context leaves it out) whose builder knows the
//!    revision (`--build-arg`);
//! 2. else `git rev-parse --short HEAD` in this checkout;
//! 3. else `unknown`: outside a git checkout, without git, or when git refuses (a checkout
//!    owned by another user). The build never fails for want of a revision.
//!
//! Kept to characters allowed in SemVer build metadata (`[0-9A-Za-z-.]`), so that the
//! version is `0.1.0+1a2b3c4` and always a valid header value. The revision is the
//! commit's: uncommitted changes are not marked (that would rebuild the crate on every
//! edit of any file).
//!
//! Rebuilt when `HEAD` moves (a commit, a checkout) and no more often: the script watches
//! `.git/HEAD`, the ref it points to and `packed-refs`, those that exist (a path that does
//! not exist would rerun it on every build).

use std::path::Path;
use std::process::Command;

const OVERRIDE: &str = "MINITTER_GIT_REVISION";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed={OVERRIDE}");
    let revision = std::env::var(OVERRIDE)
        .ok()
        .and_then(|given| metadata(&given))
        .or_else(|| {
            watch_git_head();
            git(&["rev-parse", "--short", "HEAD"]).and_then(|out| metadata(&out))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=MINITTER_BUILD_REVISION={revision}");
}

/// `text` as SemVer build metadata, or `None` if nothing of it is left.
fn metadata(text: &str) -> Option<String> {
    let kept: String = text
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        .collect();
    let kept = kept.trim_matches('.').to_owned();
    (!kept.is_empty()).then_some(kept)
}

/// Asks cargo to rerun this script when the checked-out commit changes.
fn watch_git_head() {
    let mut watched = Vec::new();
    if let Some(head) = git(&["rev-parse", "--git-path", "HEAD"]) {
        watched.push(head);
    }
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"])
        .and_then(|reference| git(&["rev-parse", "--git-path", &reference]))
    {
        watched.push(branch);
    }
    if let Some(packed) = git(&["rev-parse", "--git-path", "packed-refs"]) {
        watched.push(packed);
    }
    for path in watched {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}

/// What `git args` prints in the crate's directory, trimmed; `None` if it fails.
fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    if !output.status.success() {
        return None;
    }
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}
