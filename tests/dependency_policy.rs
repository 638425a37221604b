//! The licenses and sources policy of deny.toml, checked on every test run
//! without cargo-deny (scripts/audit.sh runs cargo-deny itself, with the
//! RustSec advisories): every package in `cargo metadata` comes from
//! crates.io or this workspace, and its license expression is satisfied by
//! deny.toml's `[licenses] allow` list.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// The quoted names in deny.toml's `[licenses]` `allow = [ … ]`.
fn allowed_licenses(deny: &str) -> BTreeSet<String> {
    let section = deny.split("[licenses]").nth(1).expect("deny.toml has [licenses]");
    let list = section.split("allow = [").nth(1).and_then(|s| s.split(']').next()).expect("[licenses] has allow = [ … ]");
    list.lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().trim_end_matches(','))
        .filter(|l| !l.is_empty())
        .map(|l| l.trim_matches('"').to_string())
        .collect()
}

/// Whether an SPDX expression (`A OR B`, `A AND B`, `A/B` as old crates
/// write OR, parentheses) is satisfied by `allowed`.
fn satisfied(expr: &str, allowed: &BTreeSet<String>) -> bool {
    let expr = expr.replace('/', " OR ");
    let expr = expr.trim();
    if let Some(inner) = expr.strip_prefix('(').and_then(|e| e.strip_suffix(')')) {
        if balanced(inner) {
            return satisfied(inner, allowed);
        }
    }
    if let Some(parts) = split_top(expr, " OR ") {
        return parts.iter().any(|p| satisfied(p, allowed));
    }
    if let Some(parts) = split_top(expr, " AND ") {
        return parts.iter().all(|p| satisfied(p, allowed));
    }
    allowed.contains(expr)
}

fn balanced(s: &str) -> bool {
    let mut depth = 0i32;
    for c in s.chars() {
        depth += match c {
            '(' => 1,
            ')' => -1,
            _ => 0,
        };
        if depth < 0 {
            return false;
        }
    }
    depth == 0
}

/// `expr` split at `op` outside parentheses, if `op` occurs there.
fn split_top(expr: &str, op: &str) -> Option<Vec<String>> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0i32, 0);
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'(' => depth += 1,
            b')' => depth -= 1,
            _ if depth == 0 && expr[i..].starts_with(op) => {
                parts.push(expr[start..i].to_string());
                i += op.len();
                start = i;
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    (!parts.is_empty()).then(|| {
        parts.push(expr[start..].to_string());
        parts
    })
}

#[test]
fn spdx_expressions_are_read_as_cargo_deny_reads_them() {
    let allowed: BTreeSet<String> = ["MIT", "Apache-2.0", "Unicode-3.0"].iter().map(|s| s.to_string()).collect();
    assert!(satisfied("MIT OR Apache-2.0", &allowed));
    assert!(satisfied("Apache-2.0/MIT", &allowed));
    assert!(satisfied("(MIT OR Apache-2.0) AND Unicode-3.0", &allowed));
    assert!(!satisfied("MIT AND GPL-3.0", &allowed));
    assert!(!satisfied("GPL-3.0 OR LGPL-2.1-or-later", &allowed));
    assert!(satisfied("LGPL-2.1-or-later OR MIT", &allowed));
}

#[test]
fn every_dependency_has_an_allowed_license_and_comes_from_crates_io() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let deny = std::fs::read_to_string(root.join("deny.toml")).expect("reading deny.toml");
    let allowed = allowed_licenses(&deny);
    assert!(allowed.contains("MIT") && allowed.contains("Apache-2.0"), "{allowed:?}");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(&root)
        .output()
        .expect("running cargo metadata");
    assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let packages = meta["packages"].as_array().expect("packages");
    assert!(packages.len() > 100, "{} packages", packages.len());
    let mut refused = Vec::new();
    for p in packages {
        let name = format!("{} {}", p["name"].as_str().unwrap_or("?"), p["version"].as_str().unwrap_or("?"));
        match p["source"].as_str() {
            // The workspace's own packages: unpublished or ours.
            None => continue,
            Some("registry+https://github.com/rust-lang/crates.io-index") => {}
            Some(other) => refused.push(format!("{name}: source {other}")),
        }
        match p["license"].as_str() {
            Some(l) if satisfied(l, &allowed) => {}
            Some(l) => refused.push(format!("{name}: license {l}")),
            None => refused.push(format!("{name}: no license expression")),
        }
    }
    assert!(refused.is_empty(), "outside deny.toml's policy:\n{}", refused.join("\n"));
}
