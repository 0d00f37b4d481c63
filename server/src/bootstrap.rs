//! First start in development: an empty database gets a "default" usage plan and a demo
//! API key, and the operator is told how to use them (and where the admin token is).
//! Production starts with nothing: operators create plans and keys through `/admin/v1`.

use std::path::Path;

use anyhow::Result;

use crate::infra::store::{KeySettings, KeyWrite, NewKey, PlanSettings, Store};

/// Creates the default plan and a demo key on an empty database, and says so on stderr
/// (once: the secret is not kept anywhere it could be printed again).
pub async fn first_start(store: &dyn Store, data_dir: &Path) -> Result<()> {
    if store.has_plans().await? {
        return Ok(());
    }
    let plan = store
        .create_plan(PlanSettings {
            description: Some("Created at first start in development.".to_owned()),
            throttle: Some((10.0, 20)),
            quota: Some((10_000, "DAY".to_owned())),
            ..PlanSettings::named("default")
        })
        .await?;
    let KeyWrite::Done(NewKey {
        record: key,
        secret,
    }) = store.create_key(KeySettings::new("demo", plan.id)).await?
    else {
        anyhow::bail!("BUG: the plan just created is not there");
    };
    let admin_token = data_dir.join("admin-token");
    eprintln!(
        "\nFirst start: created the usage plan \"default\" (10 requests/s, burst 20, 10,000 a day)\n\
         and the API key \"{}\" in it. Its secret, shown this once:\n\n    x-api-key: {secret}\n\n\
         The admin token for /admin/v1 is in {}.\n",
        key.name,
        admin_token.display()
    );
    Ok(())
}
