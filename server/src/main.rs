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

/// mimalloc's `arena_eager_commit` option (its place in `mimalloc.h`, the same in 2.x and
/// 3.x; libmimalloc-sys names only some of the options).
const ARENA_EAGER_COMMIT: libmimalloc_sys::mi_option_t = 4;

/// By default on Linux, mimalloc commits each arena whole when it reserves it, and the
/// memory it later frees there stays resident: 34 MiB of anonymous memory idle with 7 MB
/// live, and 155–157 MiB in the benchmark's read phases. Committed on demand, the same
/// runs measured 11 MiB and 129–132 MiB at the same throughput (docs/benchmarks.md,
/// "Memory"). It must run before the first allocation, which reserves the first arena, and
/// the Rust runtime allocates before `main`: so it is a constructor, run as the binary
/// loads. `MIMALLOC_ARENA_EAGER_COMMIT` in the environment still overrides it.
#[ctor::ctor(unsafe)]
#[allow(unsafe_code)]
fn commit_allocator_memory_on_demand() {
    // SAFETY: this stores a number in mimalloc's table of options (only where the
    // environment did not set one); it takes no pointer and has no other effect.
    unsafe { libmimalloc_sys::mi_option_set_default(ARENA_EAGER_COMMIT, 0) };
}

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
