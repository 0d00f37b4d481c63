//! The `minitter-server` binary: configuration, logging, then the one startup path (or an
//! operator's `admin` command).

use clap::Parser;
use minitter_server::admin_cli::{self, AdminCommand};
use minitter_server::config::Config;
use minitter_server::http::telemetry;
use minitter_server::startup::Application;

/// mimalloc rather than the system allocator: a compressed response allocates a few
/// hundred KiB of encoder state and frees it at once, which glibc hands back to the kernel
/// each time (page faults and zeroing took most of the gzip path's time); mimalloc keeps
/// such memory for the next response. Its 2.x line (the workspace's `v2` feature) keeps less
/// of it resident than 3.x for the same speed.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Minitter API server.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(flatten)]
    config: Config,
    /// Without a command, the server runs.
    #[command(subcommand)]
    command: Option<Command>,
}

/// What the binary does instead of serving.
#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Manage usage plans and API keys in the data directory's database.
    #[command(subcommand)]
    Admin(AdminCommand),
}

fn main() -> anyhow::Result<()> {
    // Before the runtime starts any thread: the config file sets variables.
    Config::read_config_file()?;
    let Cli { config, command } = Cli::parse();
    let runtime = tokio::runtime::Runtime::new()?;
    // Inside the runtime: exported spans are sent by a task on it.
    let telemetry = {
        let _inside = runtime.enter();
        telemetry::init(config.log_json, config.otlp_endpoint.as_ref())?
    };
    let outcome = runtime.block_on(async {
        match command {
            Some(Command::Admin(command)) => admin_cli::run(command, &config).await,
            None => Application::build(config).await?.run_until_stopped().await,
        }
    });
    // While the runtime still runs: the last spans go out, then the last log lines.
    drop(telemetry);
    outcome
}
