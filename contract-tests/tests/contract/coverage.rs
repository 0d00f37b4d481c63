//! Coverage that holds when every scenario runs alone, in any order, in its own process.
//!
//! The scenarios are independent tests, and nextest runs each in a process of its own, so
//! nothing can gather what they exercised in memory and check it at the end; and a file
//! written by each test and read by a "last" test would depend on an order no runner
//! promises (and on files a previous run left behind). Coverage is therefore split in a
//! static half and a dynamic half, each checkable on its own:
//!
//! - **Claims (static).** Every scenario states the (operationId, status) pairs it
//!   exercises, next to its code (the `scenarios!` table of each file, collected in
//!   `main.rs`'s `ALL`). A claim is `"operation status…"`; the operation `*` stands for
//!   every operation that declares the status (a scenario such as "the database is gone"
//!   claims `* 503`, and then has to exercise a new operation's 503 too).
//!   [`every_declared_status_is_claimed`] needs no server: it fails when a pair the
//!   document declares is neither claimed by a scenario nor listed in `uncovered.txt`,
//!   when a claim names a pair the document does not declare, and when a listed pair is
//!   claimed.
//! - **Keeping the claims (dynamic).** When a scenario ends, [`check_scenario`] checks
//!   every exchange its server had against the document (status declared, content type,
//!   body schema, required headers), and fails when a pair it claims was not exercised,
//!   or when it exercised a pair that `uncovered.txt` lists (which may only shrink).
//!
//! So a declared pair that nothing exercises fails one of the two: either nobody claims
//! it, or its claimant does not keep the claim. A scenario may exercise more than it
//! claims (every scenario signs two users up, for instance).

use std::collections::BTreeSet;

use crate::harness::Exchange;
use crate::spec::Contract;

/// A scenario, and the (operationId, status) pairs it claims to exercise.
#[derive(Debug)]
pub struct Scenario {
    pub name: &'static str,
    pub claims: &'static [&'static str],
}

type Pair = (String, String);

/// The pairs `claims` name, with `*` expanded to every operation declaring the status.
fn claimed_pairs(claims: &[&str], declared: &BTreeSet<Pair>) -> BTreeSet<Pair> {
    let mut pairs = BTreeSet::new();
    for claim in claims {
        let mut words = claim.split_whitespace();
        let operation = words.next().expect("a claim names an operation");
        let statuses: Vec<&str> = words.collect();
        assert!(!statuses.is_empty(), "claim {claim:?} names no status");
        for status in statuses {
            if operation == "*" {
                let every = declared.iter().filter(|(_, s)| s == status).cloned();
                pairs.extend(every);
            } else {
                pairs.insert((operation.to_owned(), status.to_owned()));
            }
        }
    }
    pairs
}

/// The pairs `uncovered.txt` lists.
fn listed_as_uncovered() -> BTreeSet<Pair> {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/uncovered.txt"))
        .expect("contract-tests/uncovered.txt");
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (operation, status) = line
                .split_once(' ')
                .unwrap_or_else(|| panic!("uncovered.txt: {line:?} is not `operation status`"));
            (operation.to_owned(), status.trim().to_owned())
        })
        .collect()
}

fn show(pairs: &BTreeSet<Pair>) -> Vec<String> {
    pairs
        .iter()
        .map(|(op, status)| format!("{op} {status}"))
        .collect()
}

/// The end of every scenario: its server's answers all match the document, and it
/// exercised what it claims and nothing `uncovered.txt` lists.
pub fn check_scenario(exchanges: &[Exchange], claims: &[&str]) {
    let contract = Contract::load();
    let mut exercised = BTreeSet::new();
    let mut failures = Vec::new();
    for exchange in exchanges {
        match contract.check(exchange) {
            Ok(Some(pair)) => {
                exercised.insert(pair);
            }
            Ok(None) => {}
            Err(problems) => failures.extend(problems),
        }
    }
    assert!(
        failures.is_empty(),
        "responses break the spec:\n{}",
        failures.join("\n")
    );
    let claimed = claimed_pairs(claims, &contract.declared());
    let not_kept: BTreeSet<Pair> = claimed.difference(&exercised).cloned().collect();
    assert!(
        not_kept.is_empty(),
        "the scenario claims pairs it did not exercise: {:?}",
        show(&not_kept)
    );
    let newly_covered: BTreeSet<Pair> = listed_as_uncovered()
        .intersection(&exercised)
        .cloned()
        .collect();
    assert!(
        newly_covered.is_empty(),
        "contract-tests/uncovered.txt is wrong. Exercised now, remove them (and claim them): {:?}",
        show(&newly_covered)
    );
}

/// Every pair the document declares is claimed by a scenario or listed in `uncovered.txt`
/// (and not both); every claim names a declared pair.
#[test]
fn every_declared_status_is_claimed() {
    let declared = Contract::load().declared();
    let mut claimed = BTreeSet::new();
    let mut undeclared = Vec::new();
    for scenario in crate::ALL.iter().copied().flatten() {
        let pairs = claimed_pairs(scenario.claims, &declared);
        for (op, status) in pairs.difference(&declared) {
            undeclared.push(format!("{}: {op} {status}", scenario.name));
        }
        claimed.extend(pairs);
    }
    assert!(
        undeclared.is_empty(),
        "scenarios claim pairs the document does not declare:\n{}",
        undeclared.join("\n")
    );
    let listed = listed_as_uncovered();
    let listed_undeclared: BTreeSet<Pair> = listed.difference(&declared).cloned().collect();
    let listed_claimed: BTreeSet<Pair> = listed.intersection(&claimed).cloned().collect();
    let unclaimed: BTreeSet<Pair> = declared
        .difference(&claimed)
        .filter(|pair| !listed.contains(*pair))
        .cloned()
        .collect();
    assert!(
        listed_undeclared.is_empty() && listed_claimed.is_empty() && unclaimed.is_empty(),
        "contract-tests/uncovered.txt is wrong.\nListed but not declared: {:?}\n\
         Listed but claimed by a scenario, remove them: {:?}\n\
         Neither claimed nor listed, cover them (or list them): {:?}",
        show(&listed_undeclared),
        show(&listed_claimed),
        show(&unclaimed)
    );
}
