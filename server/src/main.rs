//! The `minitter-server` binary: configuration, logging, then the one startup path (or an
//! operator's `admin` command).

use minitter_server::admin_cli;
use minitter_server::config::{Command, Config};
use minitter_server::startup::Application;
use minitter_server::telemetry;

/// mimalloc rather than the system allocator: a compressed response allocates a few
/// hundred KiB of encoder state and frees it at once, which glibc hands back to the kernel
/// each time (page faults and zeroing took most of the gzip path's time); mimalloc keeps
/// such memory for the next response.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // Before the runtime starts any thread: loading the config file sets variables.
    let config = Config::load()?;
    let runtime = tokio::runtime::Runtime::new()?;
    // Inside the runtime: exported spans are sent by a task on it.
    let telemetry = {
        let _inside = runtime.enter();
        telemetry::init(config.log_json, config.otlp_endpoint.as_ref())?
    };
    let outcome = runtime.block_on(async {
        match config.command.clone() {
            Some(Command::Admin(command)) => admin_cli::run(command, &config).await,
            None => Application::build(config).await?.run_until_stopped().await,
        }
    });
    // While the runtime still runs: the last spans go out, then the last log lines.
    drop(telemetry);
    outcome
}
