//! Decides, when the tests are compiled, which service-backed tests run and which are
//! reported as skipped (`#[ignore]`), since neither libtest nor nextest can skip a test at
//! run time. A test that needs a service runs when its URL is set, or when `CI=true`,
//! where a missing service must fail the run rather than skip it.

fn main() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    println!("cargo::rerun-if-env-changed=CI");
    for (variable, cfg) in [
        ("MINITTER_TEST_DATABASE_URL", "minitter_postgres"),
        ("MINITTER_TEST_S3_ENDPOINT", "minitter_s3"),
    ] {
        println!("cargo::rerun-if-env-changed={variable}");
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if ci || std::env::var_os(variable).is_some_and(|v| !v.is_empty()) {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
