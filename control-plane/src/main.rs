//! The `portico` binary: reads the configuration, starts logging, runs the control plane (or,
//! with `portico store …`, one store command). A bad configuration exits with code 64 and one
//! line naming the problem.

use std::process::ExitCode;

use portico_control_plane::config::{Command, Config, ConfigError, Environment, Invocation};

/// `EX_USAGE` from sysexits.h.
const EXIT_BAD_CONFIG: u8 = 64;

#[allow(clippy::print_stdout, reason = "--help and --version answer on stdout")]
fn main() -> ExitCode {
    let Invocation { config, command } = match Config::load(std::env::args_os(), &Environment) {
        Ok(invocation) => invocation,
        Err(ConfigError::Info(text)) => {
            print!("{text}");
            return ExitCode::SUCCESS;
        }
        Err(error) => {
            eprintln!("portico: {error}");
            return ExitCode::from(EXIT_BAD_CONFIG);
        }
    };
    if let Err(error) = portico_control_plane::init_tracing(&config.log) {
        eprintln!("portico: {error}");
        return ExitCode::from(EXIT_BAD_CONFIG);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("portico: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let serving = command == Command::Serve;
    let outcome = runtime.block_on(async {
        match command {
            Command::Serve => portico_control_plane::run(config).await,
            Command::Store(store) => portico_control_plane::commands::run(&config, &store)
                .await
                .map(|summary| eprintln!("portico: {summary}")),
        }
    });
    // Everything durable is flushed by now; a name lookup of an IdP still blocking a worker
    // thread must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // A store command's failure is its one line on stderr, not a log event.
            if serving {
                tracing::error!(%error, "portico stopped");
            }
            eprintln!("portico: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
