//! The `minitter-server` binary: configuration, logging, then the one startup path.

use minitter_server::config::Config;
use minitter_server::startup::Application;
use minitter_server::telemetry;

fn main() -> anyhow::Result<()> {
    // Before the runtime starts any thread: loading the config file sets variables.
    let config = Config::load()?;
    telemetry::init(config.log_json);
    tokio::runtime::Runtime::new()?
        .block_on(async { Application::build(config).await?.run_until_stopped().await })
}
