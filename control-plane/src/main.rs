//! The `portico` binary: reads the configuration, starts logging, runs the control plane.
//! A bad configuration exits with code 64 and one line naming the problem.

use std::process::ExitCode;

use portico_control_plane::config::{Config, ConfigError, Environment};

/// `EX_USAGE` from sysexits.h.
const EXIT_BAD_CONFIG: u8 = 64;

#[allow(clippy::print_stdout, reason = "--help and --version answer on stdout")]
fn main() -> ExitCode {
    let config = match Config::load(std::env::args_os(), &Environment) {
        Ok(config) => config,
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
    let outcome = runtime.block_on(portico_control_plane::run(config));
    // Everything durable is flushed by now; a name lookup of an IdP still blocking a worker
    // thread must not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "portico stopped");
            eprintln!("portico: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
