//! The `minitter-server` binary: configuration, logging, then the one startup path (or an
//! operator's `admin` command).

use minitter_server::admin_cli;
use minitter_server::config::{Command, Config};
use minitter_server::startup::Application;
use minitter_server::telemetry;

fn main() -> anyhow::Result<()> {
    // Before the runtime starts any thread: loading the config file sets variables.
    let config = Config::load()?;
    let _log_writer = telemetry::init(config.log_json);
    tokio::runtime::Runtime::new()?.block_on(async {
        match config.command.clone() {
            Some(Command::Admin(command)) => admin_cli::run(command, &config).await,
            None => Application::build(config).await?.run_until_stopped().await,
        }
    })
}
