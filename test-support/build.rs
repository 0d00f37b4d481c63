//! Decides, when the tests are compiled, which service-backed tests run and which are
//! reported as skipped (`#[ignore]`), since neither libtest nor nextest can skip a test at
//! run time. A test that needs a service runs when its URL is set, or when `CI=true`,
//! where a missing service must fail the run rather than skip it.

fn main() {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    println!("cargo::rerun-if-env-changed=CI");
    let set = |variable: &str| {
        println!("cargo::rerun-if-env-changed={variable}");
        ci || std::env::var_os(variable).is_some_and(|v| !v.is_empty())
    };
    let postgres = set("MINITTER_TEST_DATABASE_URL");
    let s3 = set("MINITTER_TEST_S3_ENDPOINT");
    let redis = set("MINITTER_TEST_REDIS_URL");
    for (cfg, on) in [
        ("minitter_postgres", postgres),
        ("minitter_s3", s3),
        // Several instances sharing state: PostgreSQL and Redis both.
        ("minitter_cluster", postgres && redis),
    ] {
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if on {
            println!("cargo::rustc-cfg={cfg}");
        }
    }
}
