//! Tag `usage`: a partner's view of their own key. (The operator's report on the same
//! numbers is in `admin/usage_report.rs`.)

use crate::helpers::{Context, scenarios};

scenarios! {
    get_usage: ["get_usage 200"],
}

/// The key's plan, what it has used (the users signed up and logged in already), and no
/// quota to count down.
async fn get_usage(ctx: &Context) {
    let usage = ctx
        .anonymous
        .get_usage()
        .send()
        .await
        .expect("usage")
        .into_inner();
    assert!(usage.used > 0, "this run has made requests");
    assert_eq!(
        (usage.plan.name.as_str(), usage.remaining),
        ("contract tests", None)
    );
}
